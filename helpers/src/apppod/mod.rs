//! `AppPod=`: a container's application joins a pod's network namespace
//! while the OS around it keeps its own (sdme.container(5), sdme-pod(8)).
//!
//! Why the host makes the app's process: setns(2) into a network namespace
//! needs CAP_SYS_ADMIN over the user namespace that owns it. A pod's
//! namespace belongs to the host's; a guest with `PrivateUsers=` (and so
//! `Hardened=`, `Strict=`) has capabilities in its own user namespace only,
//! so none of its processes can ever join, and a namespace made inside one
//! container's user namespace is out of reach of every other container's.
//!
//! How (each step in its own module):
//! - the guest's `sdme-app.service` runs `sdme-drop-privs --via-pod USER
//!   WORKDIR -- COMMAND...`, the *client* ([`client`]): it blocks every
//!   signal, connects to the host's `sdme-app-pod.socket` (bound into the
//!   app's root) and waits;
//! - systemd runs `sdme-pod app-spawn` for the connection, the *spawner*
//!   ([`spawn`]): it identifies the client from the kernel ([`peer`]),
//!   finds the pod in the record sdme-prepare wrote for that container,
//!   reads what the client's process is ([`replicate`], [`seccomp`]),
//!   enters the pod's network namespace and the client's PID namespace and
//!   clones the app's process straight into the client's cgroup;
//! - that process joins the client's other namespaces and root, takes on
//!   its IDs, limits, seccomp filters, capabilities and no_new_privs, gets
//!   the client's standard fds, arguments and environment, and runs
//!   sdme-drop-privs' own steps ([`crate::droppriv`]) up to the exec;
//! - the spawner sends the app's wait status to the client, which exits
//!   with it (or dies of the same signal): the unit's result is the app's.
//!   A stop signals the whole control group: the app, not the client
//!   (which blocks signals), ends first.

pub mod client;
pub mod peer;
pub mod replicate;
pub mod seccomp;
pub mod spawn;

/// The one request a client sends.
pub const HELLO: &[u8] = b"sdme-app-pod 1";
/// Replies: `exit STATUS` (a wait status) or `error MESSAGE`.
pub const EXIT: &str = "exit ";
pub const ERROR: &str = "error ";
/// The socket's name in its directory (`sdme_core::paths::APP_POD_SOCKET_DIR`
/// on the host, bound at `sdme_core::app_unit::APP_POD_IN_APP`).
pub const SOCKET_NAME: &str = "socket";
