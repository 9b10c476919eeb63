//! Access control: RocketMQ 4.x's plain ACL, checked before a request reaches its processor
//! (RocketMQ's `PlainAccessValidator` as an RPC hook; here a [`Guard`] of the [`Router`]).
//!
//! A request passes when (in this order, as RocketMQ decides):
//! 1. the peer's address is in the global white list (no signature needed); else
//! 2. it names an account (`AccessKey`) the file lists, else it is refused; then
//! 3. the peer's address is in that account's white list (passes unchecked); else
//! 4. its `Signature` verifies with the account's secret key, and
//! 5. the account is an admin if the code needs one, and holds each permission the request
//!    needs ([`resources`]): the permission listed for the topic or group, or the account's
//!    default for topics or for groups.
//!
//! A refusal is answered NO_PERMISSION with RocketMQ's remark (a oneway request gets no
//! answer) and logged at most once per [`REFUSAL_LOG_INTERVAL_MS`], with a count of those not
//! logged. The processor never sees a refused request, so nothing is half applied.
//!
//! The file is read at start (a bad file, or one still holding the example's placeholder
//! secrets, stops the start) and checked for changes every [`RELOAD_CHECK_MS`]: a changed
//! file that reads the same twice in a row and parses replaces the accounts; one that does not
//! parse is logged and the accounts in force stay.

pub mod address;
pub mod file;
pub mod resources;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rocketraft_protocol::acl::{self as sig, ACCESS_KEY};
use rocketraft_protocol::{response_code, RemotingCommand};

use crate::router::Guard;
use crate::server::Peer;
use crate::throttle::LogThrottle;
use address::AddressPattern;
use resources::{Perm, Resource};

/// The placeholder secrets of `deploy/acl.toml` start so; a server refuses to start with one.
pub const PLACEHOLDER_SECRET_PREFIX: &str = "CHANGE-ME";

/// How often the file is checked for changes.
pub const RELOAD_CHECK_MS: u64 = 1_000;
/// At most one refusal is logged per this interval.
pub use crate::throttle::REFUSAL_LOG_INTERVAL_MS;

/// Why an ACL file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("cannot read the ACL file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid ACL file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid ACL file: {0}")]
    Invalid(String),
}

/// One account of the file.
#[derive(Debug, Clone)]
pub struct Account {
    pub(crate) secret_key: String,
    pub(crate) white: AddressPattern,
    pub(crate) admin: bool,
    pub(crate) default_topic: Perm,
    pub(crate) default_group: Perm,
    pub(crate) topics: HashMap<String, Perm>,
    pub(crate) groups: HashMap<String, Perm>,
}

impl Account {
    /// RocketMQ: an admin with no listed permissions may touch every resource.
    fn unrestricted(&self) -> bool {
        self.admin && self.topics.is_empty() && self.groups.is_empty()
    }

    fn holds(&self, resource: &Resource, needed: Perm) -> Result<(), String> {
        let (listed, default) = match resource {
            Resource::Topic(t) => (self.topics.get(t.as_ref()), self.default_topic),
            Resource::Group(g) => (self.groups.get(g.as_ref()), self.default_group),
        };
        match listed {
            Some(p) if p.grants(needed) => Ok(()),
            Some(_) => Err(format!("No permission for {resource}")),
            None if default.grants(needed) => Ok(()),
            None => Err(format!("No default permission for {resource}")),
        }
    }
}

/// The accounts of one file.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    pub(crate) global_white: Vec<AddressPattern>,
    pub(crate) accounts: HashMap<String, Account>,
}

/// Which requests a server checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every request, as a RocketMQ broker with `aclEnable` checks them.
    Broker,
    /// Only the codes that change what a NameServer serves, and those need an admin account
    /// ([`resources::NAMESRV_GUARDED_CODES`]); route lookups stay open.
    NameServer,
}

impl Acl {
    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        file::parse(text)
    }

    /// Reads and parses the file at `path`, as a server starting with it does (a placeholder
    /// secret is refused).
    pub fn read(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AclError::Read { path: path.to_owned(), source })?;
        Acl::parse_for_start(&text)
    }

    /// [`Acl::parse`], refusing the example's placeholder secrets.
    fn parse_for_start(text: &str) -> Result<Acl, AclError> {
        let acl = Acl::parse(text)?;
        if let Some(key) = acl.placeholder_secret() {
            return Err(AclError::Invalid(format!(
                "account {key:?} still has the example's placeholder secret (CHANGE-ME...): \
                 set a secret of your own"
            )));
        }
        Ok(acl)
    }

    /// Whether the account `req` is signed by (from `ip`) holds `perm` on `topic`: for a
    /// processor that learns what a request touches only from the record it names (ending a
    /// transaction). White lists and admins pass as in [`Acl::check`].
    pub fn permits(
        &self,
        req: &RemotingCommand,
        ip: IpAddr,
        topic: &str,
        perm: Perm,
    ) -> Result<(), String> {
        match self.authenticate(req, ip)? {
            Some((_, account)) if !account.unrestricted() => {
                account.holds(&Resource::topic(topic), perm)
            }
            _ => Ok(()),
        }
    }

    /// The account that signed `req`, or `None` when a white list lets it pass unchecked; the
    /// remark of the refusal when neither (RocketMQ's order: global white list, account,
    /// account white list, signature).
    fn authenticate<'a>(
        &'a self,
        req: &'a RemotingCommand,
        ip: IpAddr,
    ) -> Result<Option<(&'a str, &'a Account)>, String> {
        if self.global_white.iter().any(|p| p.matches(ip)) {
            return Ok(None);
        }
        let Some(key) = req.ext_field(ACCESS_KEY) else {
            return Err("No accessKey is configured".into());
        };
        let Some(account) = self.accounts.get(key) else {
            return Err(format!("No acl config for {key}"));
        };
        if account.white.matches(ip) {
            return Ok(None);
        }
        if !sig::verify(&account.secret_key, req) {
            return Err(format!("Check signature failed for accessKey={key}"));
        }
        Ok(Some((key, account)))
    }

    /// An account whose secret is still the shipped example's placeholder, if any.
    pub fn placeholder_secret(&self) -> Option<&str> {
        let placeholder = |s: &str| s.starts_with(PLACEHOLDER_SECRET_PREFIX);
        self.accounts.iter().find(|(_, a)| placeholder(&a.secret_key)).map(|(k, _)| k.as_str())
    }

    /// Whether `credentials` name an admin account of this file, with its secret key.
    pub fn is_admin(&self, credentials: &sig::Credentials) -> bool {
        self.accounts
            .get(&credentials.access_key)
            .is_some_and(|a| a.admin && a.secret_key == credentials.secret_key)
    }

    /// Whether `req`, from `ip`, may reach its processor on a server of `scope`; the remark
    /// of the refusal otherwise.
    pub fn check(&self, scope: Scope, req: &RemotingCommand, ip: IpAddr) -> Result<(), String> {
        let admin = match scope {
            Scope::Broker => resources::broker_admin(req.code),
            Scope::NameServer if resources::NAMESRV_GUARDED_CODES.contains(&req.code) => true,
            Scope::NameServer => return Ok(()),
        };
        let Some((key, account)) = self.authenticate(req, ip)? else {
            return Ok(());
        };
        if admin && !account.admin {
            return Err(format!(
                "Need admin permission for request code={}, but accessKey={key} is not",
                req.code
            ));
        }
        if account.unrestricted() || scope == Scope::NameServer {
            return Ok(());
        }
        // Only a signed request's body is read (a heartbeat's or a lock's JSON).
        let needs = resources::broker_needs(req)
            .map_err(|e| format!("cannot read what the request touches: {e}"))?;
        needs.resources.iter().try_for_each(|(r, p)| account.holds(r, *p))
    }
}

/// The [`Guard`] a server installs: the accounts in force, reloaded from their file.
pub struct AclGuard {
    scope: Scope,
    path: Option<PathBuf>,
    current: RwLock<(Arc<Acl>, String)>,
    /// A changed text seen once: applied only when the next read finds it unchanged, so a file
    /// caught half written (a shell's `>` truncates, then writes) is never taken.
    pending: Mutex<Option<String>>,
    log: LogThrottle,
}

impl AclGuard {
    /// A guard with fixed accounts (tests, embedded servers).
    pub fn fixed(acl: Acl, scope: Scope) -> Arc<AclGuard> {
        Arc::new(AclGuard {
            scope,
            path: None,
            current: RwLock::new((Arc::new(acl), String::new())),
            pending: Mutex::new(None),
            log: LogThrottle::new(),
        })
    }

    /// Reads `path` (an error stops the start) and starts the task that reloads it when it
    /// changes; the task ends when the guard is dropped.
    pub fn load(path: &Path, scope: Scope) -> Result<Arc<AclGuard>, AclError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AclError::Read { path: path.to_owned(), source })?;
        let acl = Acl::parse_for_start(&text)?;
        tracing::info!(path = %path.display(), accounts = acl.accounts.len(), "ACL on");
        let guard = Arc::new(AclGuard {
            scope,
            path: Some(path.to_owned()),
            current: RwLock::new((Arc::new(acl), text)),
            pending: Mutex::new(None),
            log: LogThrottle::new(),
        });
        tokio::spawn(watch(Arc::downgrade(&guard)));
        Ok(guard)
    }

    /// [`Acl::permits`] with the accounts in force.
    pub fn permits(
        &self,
        req: &RemotingCommand,
        ip: IpAddr,
        topic: &str,
        perm: Perm,
    ) -> Result<(), String> {
        self.acl().permits(req, ip, topic, perm)
    }

    /// The accounts in force.
    pub fn acl(&self) -> Arc<Acl> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Re-reads the file; replaces the accounts if its text changed, stayed the same since the
    /// previous read, and parses. Returns whether they were replaced.
    pub fn reload(&self) -> Result<bool, AclError> {
        let Some(path) = &self.path else { return Ok(false) };
        let text = std::fs::read_to_string(path)
            .map_err(|source| AclError::Read { path: path.clone(), source })?;
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == text {
            return Ok(false);
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.as_deref() != Some(text.as_str()) {
                *pending = Some(text);
                return Ok(false);
            }
            *pending = None;
        }
        let parsed = Acl::parse(&text);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // A bad text is remembered too, so it is reported once, not every second.
        current.1 = text;
        let acl = parsed?;
        tracing::info!(path = %path.display(), accounts = acl.accounts.len(), "ACL reloaded");
        current.0 = Arc::new(acl);
        Ok(true)
    }

    fn refused(&self, req: &RemotingCommand, peer: Peer, remark: &str) {
        let Some(unlogged) = self.log.due() else { return };
        tracing::warn!(
            peer = %peer.addr,
            code = req.code,
            access_key = req.ext_field(ACCESS_KEY).unwrap_or(""),
            refused_since_last_line = unlogged,
            "ACL refused a request: {remark}"
        );
    }
}

impl Guard for AclGuard {
    fn check(&self, req: &RemotingCommand, peer: Peer) -> Result<(), RemotingCommand> {
        let acl = self.acl();
        acl.check(self.scope, req, peer.addr.ip()).map_err(|remark| {
            self.refused(req, peer, &remark);
            RemotingCommand::response_to(req, response_code::NO_PERMISSION, Some(remark))
        })
    }
}

async fn watch(guard: Weak<AclGuard>) {
    loop {
        tokio::time::sleep(Duration::from_millis(RELOAD_CHECK_MS)).await;
        let Some(g) = guard.upgrade() else { return };
        // A small file, read on a blocking thread: never on an async worker. madsim has no
        // blocking threads (and the simulation never turns ACL on): read it in the task.
        #[cfg(not(madsim))]
        let result = tokio::task::spawn_blocking(move || g.reload()).await;
        #[cfg(madsim)]
        let result: Result<_, std::convert::Infallible> = Ok(g.reload());
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("{e}; the accounts in force stay"),
            Err(e) => tracing::error!("the ACL reload task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rocketraft_protocol::acl::Credentials;
    use rocketraft_protocol::{request_code as rc, ExtFields};

    use super::*;

    const FILE: &str = r#"
        global_white_remote_addresses = ["10.9.9.*"]
        [[accounts]]
        access_key = "producer1"
        secret_key = "producer-secret"
        default_topic_perm = "DENY"
        topic_perms = ["Orders=PUB", "Audit=SUB"]
        [[accounts]]
        access_key = "consumer1"
        secret_key = "consumer-secret"
        default_topic_perm = "SUB"
        default_group_perm = "SUB"
        group_perms = ["Other=DENY"]
        [[accounts]]
        access_key = "admin-key"
        secret_key = "admin-secret"
        admin = true
        [[accounts]]
        access_key = "trusted"
        secret_key = "trusted-secret"
        white_remote_address = "10.1.1.{1,2}"
    "#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn send(topic: &str) -> RemotingCommand {
        let mut cmd = RemotingCommand::request_without_header(rc::SEND_MESSAGE_V2);
        let mut f = ExtFields::new();
        f.insert("a", "PG");
        f.insert("b", topic);
        cmd.ext_fields = Some(f);
        cmd.with_body(&b"body"[..])
    }

    fn pull(topic: &str, group: &str) -> RemotingCommand {
        let mut cmd = RemotingCommand::request_without_header(rc::PULL_MESSAGE);
        let mut f = ExtFields::new();
        f.insert("topic", topic);
        f.insert("consumerGroup", group);
        cmd.ext_fields = Some(f);
        cmd
    }

    fn signed(mut cmd: RemotingCommand, key: &str, secret: &str) -> RemotingCommand {
        Credentials::new(key, secret).sign(&mut cmd);
        cmd
    }

    #[test]
    fn an_account_does_what_it_is_allowed_and_nothing_else() {
        let acl = Acl::parse(FILE).unwrap();
        let here = ip("192.168.5.5");
        let check = |cmd: &RemotingCommand| acl.check(Scope::Broker, cmd, here);

        assert_eq!(check(&send("Orders")), Err("No accessKey is configured".into()));
        assert!(check(&signed(send("Orders"), "producer1", "producer-secret")).is_ok());
        assert_eq!(
            check(&signed(send("Orders"), "producer1", "wrong-secret")),
            Err("Check signature failed for accessKey=producer1".into())
        );
        assert_eq!(
            check(&signed(send("Orders"), "nobody-at-all", "whatever")),
            Err("No acl config for nobody-at-all".into())
        );
        assert_eq!(
            check(&signed(send("Audit"), "producer1", "producer-secret")),
            Err("No permission for topic=Audit".into())
        );
        assert_eq!(
            check(&signed(send("Else"), "producer1", "producer-secret")),
            Err("No default permission for topic=Else".into())
        );
        // A body changed after signing.
        let tampered = signed(send("Orders"), "producer1", "producer-secret").with_body(&b"x"[..]);
        assert!(check(&tampered).is_err());

        assert!(check(&signed(pull("Audit", "G1"), "consumer1", "consumer-secret")).is_ok());
        assert_eq!(
            check(&signed(pull("Audit", "Other"), "consumer1", "consumer-secret")),
            Err("No permission for group=Other".into())
        );
        assert!(check(&signed(send("Audit"), "consumer1", "consumer-secret")).is_err());

        let create = RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_TOPIC);
        assert_eq!(
            check(&signed(create.clone(), "consumer1", "consumer-secret")),
            Err(format!(
                "Need admin permission for request code={}, but accessKey=consumer1 is not",
                rc::UPDATE_AND_CREATE_TOPIC
            ))
        );
        assert!(check(&signed(create, "admin-key", "admin-secret")).is_ok());
        assert!(check(&signed(send("Anything"), "admin-key", "admin-secret")).is_ok());
    }

    #[test]
    fn white_lists_pass_requests_as_rocketmq_does() {
        let acl = Acl::parse(FILE).unwrap();
        assert!(acl.check(Scope::Broker, &send("Orders"), ip("10.9.9.3")).is_ok(), "global");
        let mut named = send("Anything");
        named.set_ext_field(ACCESS_KEY, "trusted");
        assert!(acl.check(Scope::Broker, &named, ip("10.1.1.2")).is_ok(), "account's list");
        assert!(acl.check(Scope::Broker, &named, ip("10.1.1.3")).is_err());
    }

    #[test]
    fn a_placeholder_secret_stops_the_start_and_a_changed_file_applies_once_it_is_stable() {
        let dir = std::env::temp_dir().join(format!("rr-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("acl.toml");
        let account = |secret: &str| {
            format!("[[accounts]]\naccess_key = \"someone\"\nsecret_key = \"{secret}\"\n")
        };
        std::fs::write(&path, account("CHANGE-ME-please")).unwrap();
        let e = Acl::read(&path).unwrap_err().to_string();
        assert!(e.contains("placeholder secret"), "{e}");

        std::fs::write(&path, account("first-secret")).unwrap();
        let acl = Acl::read(&path).unwrap();
        let guard = AclGuard {
            scope: Scope::Broker,
            path: Some(path.clone()),
            current: RwLock::new((Arc::new(acl), account("first-secret"))),
            pending: Mutex::new(None),
            log: LogThrottle::new(),
        };
        assert!(!guard.reload().unwrap(), "unchanged");
        std::fs::write(&path, account("second-secret")).unwrap();
        assert!(!guard.reload().unwrap(), "seen once: not yet");
        assert!(guard.reload().unwrap(), "the same twice: applied");
        assert_eq!(guard.acl().accounts["someone"].secret_key, "second-secret");
        std::fs::write(&path, "[[accounts]]\n").unwrap();
        assert!(!guard.reload().unwrap());
        assert!(guard.reload().is_err(), "a broken file is reported");
        assert_eq!(guard.acl().accounts["someone"].secret_key, "second-secret", "and not taken");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_nameserver_checks_only_what_changes_it_and_wants_an_admin() {
        let acl = Acl::parse(FILE).unwrap();
        let here = ip("192.168.5.5");
        let route = RemotingCommand::request_without_header(rc::GET_ROUTEINFO_BY_TOPIC);
        assert!(acl.check(Scope::NameServer, &route, here).is_ok(), "lookups stay open");
        let register = RemotingCommand::request_without_header(rc::REGISTER_BROKER);
        assert!(acl.check(Scope::NameServer, &register, here).is_err());
        let by = |k, s| acl.check(Scope::NameServer, &signed(register.clone(), k, s), here);
        assert!(by("producer1", "producer-secret").is_err(), "not an admin");
        assert!(by("admin-key", "admin-secret").is_ok());
    }
}
