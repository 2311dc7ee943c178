//! Tests of the hub socket: the private run directory, stale and over-long socket paths,
//! and the peer uid check.

use std::{
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
};

use super::{bind, check_peer, check_uid, connect, no_hub_listens};
use crate::{hub_socket::HubAddress, paths::StatePaths};

fn address(root: &Path) -> HubAddress {
    HubAddress::for_config(&StatePaths::new(root), &root.join("config.json5"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn bind_makes_a_private_dir_and_socket_and_replaces_a_stale_one() {
    let root = tempfile::tempdir().expect("temp dir");
    let address = address(root.path());
    let first = bind(&address).expect("bind");
    assert_eq!(mode(address.socket.parent().expect("run dir")), 0o700);
    assert_eq!(mode(&address.socket), 0o600);
    drop(first);
    let error = connect(&address.socket).await.expect_err("nobody listens");
    assert!(no_hub_listens(&error), "{error}");

    let listener = bind(&address).expect("bind over the stale socket");
    let (client, accepted) = tokio::join!(connect(&address.socket), listener.accept());
    client.expect("connect");
    let (stream, _) = accepted.expect("accept");
    let peer = check_peer(&stream).expect("same user");
    assert_eq!(peer.pid, Some(std::process::id() as i32));
}

#[tokio::test]
async fn a_run_dir_open_to_others_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let address = address(root.path());
    let run_dir = root.path().join("run");
    std::fs::create_dir(&run_dir).expect("create run dir");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let error = bind(&address).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains(&format!("`{}` has mode 0755", run_dir.display())), "{message}");
    assert!(message.contains("chmod 700"), "{message}");
    assert!(!address.socket.exists());
}

#[tokio::test]
async fn a_run_dir_that_is_a_symlink_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("create dir");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    symlink(&elsewhere, root.path().join("run")).expect("symlink");
    let error = bind(&address(root.path())).expect_err("refused");
    assert!(error.to_string().contains("is not a directory"), "{error}");
}

#[tokio::test]
async fn a_socket_path_over_the_limit_is_a_clear_error() {
    let root = tempfile::tempdir().expect("temp dir");
    let deep = root.path().join("d".repeat(120));
    let address = address(&deep);
    for error in
        [bind(&address).expect_err("too long"), connect(&address.socket).await.expect_err("too long")]
    {
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("over the system's limit"), "{error}");
        assert!(error.to_string().contains("FOXXY_BRIDGE_HOME"), "{error}");
    }
    assert!(!deep.exists(), "nothing is created for a path that cannot work");
}

#[test]
fn another_uid_is_refused_by_name() {
    assert!(check_uid(1000, Some(7), 1000).is_ok());
    let error = check_uid(1001, Some(4242), 1000).expect_err("other user");
    assert_eq!(
        error.to_string(),
        "refused a connection from uid 1001 (pid 4242): only uid 1000 may use this hub"
    );
    let error = check_uid(0, None, 1000).expect_err("other user");
    assert!(error.to_string().contains("(pid unknown)"), "{error}");
}
