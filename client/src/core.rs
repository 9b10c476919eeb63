//! What producers, consumers and admin handles share: the connection pool, the route cache,
//! the client id, the settings common to all of them, and the background loops (route poll,
//! heartbeats) that end when the handle shuts down.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
#[cfg(not(madsim))]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketraft_protocol::acl::Credentials;
use rocketraft_protocol::body::{HeartbeatData, JsonBody, JsonStyle};
use rocketraft_protocol::headers::UnregisterClientRequestHeader;
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use rocketraft_remoting::tls::ClientTls;
use tokio::sync::watch;

use crate::error::{ClientError, Result};
use crate::remoting::{InboundHandler, Remoting, RemotingConfig};
use crate::route::Routes;

/// Settings every client handle has. Defaults follow RocketMQ's.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// NameServer addresses (host:port). RocketMQ's `namesrvAddr`.
    pub namesrv_addrs: Vec<String>,
    /// Distinguishes client instances in one process; part of the client id `ip@instance`.
    /// Default: the process id and a per-process counter.
    pub instance_name: Option<String>,
    /// Timeout of one request (admin calls, offset queries, heartbeats). Default 3,000 ms.
    pub call_timeout_ms: u64,
    /// How often cached routes are refreshed. Default 30,000 ms (`pollNameServerInterval`).
    pub route_poll_ms: u64,
    /// How often brokers get a heartbeat. Default 30,000 ms (`heartbeatBrokerInterval`).
    pub heartbeat_ms: u64,
    pub remoting: RemotingConfig,
}

impl ClientConfig {
    /// Settings for the NameServers in `namesrv_addrs`: one address, or several separated by
    /// `;` as RocketMQ writes them (`"10.0.0.1:9876;10.0.0.2:9876"`).
    pub fn new(namesrv_addrs: &str) -> Self {
        ClientConfig {
            namesrv_addrs: namesrv_addrs
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            instance_name: None,
            call_timeout_ms: 3_000,
            route_poll_ms: 30_000,
            heartbeat_ms: 30_000,
            remoting: RemotingConfig::default(),
        }
    }

    /// Signs every request with an ACL account's keys, as RocketMQ's `AclClientRPCHook` does:
    /// brokers with ACL on refuse unsigned requests.
    pub fn with_credentials(mut self, access_key: &str, secret_key: &str) -> Self {
        self.remoting.credentials = Some(Credentials::new(access_key, secret_key));
        self
    }

    /// Connects to NameServers and brokers over TLS, trusting `tls`'s CA (e.g.
    /// `ClientTls::from_ca_file`). Their ports must speak TLS (permissive or enforcing).
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.remoting.tls = Some(tls);
        self
    }
}

/// Instances made by this process, for default instance names.
#[cfg(not(madsim))]
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The default instance name, `pid#n`: unique among this process's clients. Under madsim `n`
/// comes from the seeded RNG instead of a process-wide counter: a counter carries over from one
/// simulation to the next in the same process (and between tests running in parallel), so the
/// same seed would give other client ids, sorted differently in rebalances (a seed must replay
/// the same run).
fn default_instance_name() -> String {
    #[cfg(madsim)]
    let n = madsim::rand::random::<u32>();
    #[cfg(not(madsim))]
    let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
    format!("{}#{n}", std::process::id())
}

pub(crate) struct Core {
    pub config: ClientConfig,
    pub remoting: Remoting,
    pub routes: Routes,
    pub client_id: String,
    pub local_ip: IpAddr,
    stop: watch::Sender<bool>,
    closed: AtomicBool,
}

impl Core {
    /// Connects to the first reachable NameServer (to learn the local address peers see) and
    /// builds the handle. Fails only on unusable settings; unreachable NameServers are retried
    /// by every later call.
    pub async fn start(config: ClientConfig, handler: Option<InboundHandler>) -> Result<Arc<Core>> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no NameServer address: pass host:port (several separated by ';')".into(),
            ));
        }
        for a in &config.namesrv_addrs {
            if !a.contains(':') {
                return Err(ClientError::InvalidArgument(format!(
                    "NameServer address {a:?} has no port: write host:port, e.g. 127.0.0.1:9876"
                )));
            }
        }
        let remoting = Remoting::new(config.remoting.clone(), handler);
        for a in &config.namesrv_addrs {
            if remoting.connect(a).await.is_ok() {
                break;
            }
        }
        let local_ip = remoting.local_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let instance = config.instance_name.clone().unwrap_or_else(default_instance_name);
        let routes =
            Routes::new(remoting.clone(), config.namesrv_addrs.clone(), config.call_timeout_ms);
        let (stop, _) = watch::channel(false);
        Ok(Arc::new(Core {
            client_id: format!("{local_ip}@{instance}"),
            local_ip,
            config,
            remoting,
            routes,
            stop,
            closed: AtomicBool::new(false),
        }))
    }

    /// Runs `tick` every `period_ms` until shutdown (the first run after one period).
    pub fn every<F, Fut>(&self, period_ms: u64, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_millis(period_ms)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                tokio::select! {
                    biased;
                    _ = tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    /// A receiver that turns true at shutdown.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Starts the periodic route refresh.
    pub fn poll_routes(self: &Arc<Self>) {
        let core = self.clone();
        self.every(self.config.route_poll_ms, move || {
            let core = core.clone();
            async move { core.routes.refresh_all().await }
        });
    }

    /// Calls `addr` and turns any answer but SUCCESS into [`ClientError::Broker`].
    pub async fn call_ok(&self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
        let resp = self.remoting.call(addr, req, self.config.call_timeout_ms).await?;
        expect_success(addr, resp)
    }

    /// Sends `data` to every replica of every broker group the routes know.
    pub async fn heartbeat(&self, data: &HeartbeatData) {
        let body = data.to_json(JsonStyle::Standard);
        for (name, replicas) in self.routes.brokers() {
            for addr in replicas.values() {
                let req = RemotingCommand::request_without_header(request_code::HEART_BEAT)
                    .with_body(body.clone());
                if let Err(e) = self.call_ok(addr, req).await {
                    tracing::debug!(broker = %name, %addr, error = %e, "heartbeat not delivered");
                }
            }
        }
    }

    /// Stops the background loops and closes the connections, without a goodbye to the
    /// brokers (what dropping a handle without `shutdown` does).
    pub fn halt(&self) {
        self.stop.send_replace(true);
        self.remoting.shutdown();
    }

    /// Leaves the groups on every broker, then stops the loops and closes the connections.
    pub async fn shutdown(&self, producer_group: Option<&str>, consumer_group: Option<&str>) {
        self.stop.send_replace(true);
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for replicas in self.routes.brokers().values() {
            for addr in replicas.values() {
                let req = RemotingCommand::request(
                    request_code::UNREGISTER_CLIENT,
                    &UnregisterClientRequestHeader {
                        client_id: self.client_id.clone(),
                        producer_group: producer_group.map(str::to_owned),
                        consumer_group: consumer_group.map(str::to_owned),
                    },
                );
                if let Err(e) = self.call_ok(addr, req).await {
                    tracing::debug!(%addr, error = %e, "unregister not delivered");
                }
            }
        }
        self.remoting.shutdown();
    }
}

/// Turns any answer but SUCCESS into [`ClientError::Broker`].
pub(crate) fn expect_success(addr: &str, resp: RemotingCommand) -> Result<RemotingCommand> {
    if resp.code == response_code::SUCCESS {
        Ok(resp)
    } else {
        Err(ClientError::Broker {
            addr: addr.to_owned(),
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        })
    }
}
