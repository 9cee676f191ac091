//! The deployer tested for real: two SSH hosts made on this machine by
//! the workspace's `tests/two-hosts.sh` (two network namespaces, each with its own sshd,
//! keys and working directory), and `duokv-deploy` pushing the binaries,
//! running the workload in both modes, fetching the logs and reporting.
//!
//! It needs root (network namespaces) and OpenSSH's sshd. Under CI (`CI`
//! set) a missing one is a failure; elsewhere the tests skip and say why.
//!
//! The deployer is the `deploy` feature of duokv-tools (it links OpenSSL);
//! built without it, this file has one test, which says the deploy tests
//! were skipped (and fails under CI, which builds with the feature).

#[path = "../../tests/common/mod.rs"]
mod common;

#[cfg(feature = "deploy")]
#[path = "deploy/deployer.rs"]
mod deployer;

#[cfg(not(feature = "deploy"))]
#[test]
fn the_deploy_tests_need_the_deploy_feature() {
    common::skip(
        "the deploy tests",
        "the deploy feature: cargo test --workspace --features duokv-tools/deploy \
         (the deployer links OpenSSL: libssl-dev and pkg-config)",
    );
}
