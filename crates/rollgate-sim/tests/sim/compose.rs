// compose test: see below
