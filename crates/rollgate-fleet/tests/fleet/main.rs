//! Integration tests of rollgate-fleet against a real etcd (each test starts its own on free
//! loopback ports; missing etcd skips outside CI and fails under `CI=true`).

mod cluster;
mod etcd;
