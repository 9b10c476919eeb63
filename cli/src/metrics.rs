//! The metrics endpoint every `rocketraft` server process serves: Prometheus text at
//! `/metrics`, gathered on each request from the process's [`Hub`] (its NameServer, its
//! replicas).

use std::sync::Arc;

use rocketraft_metrics::Hub;
use rocketraft_remoting::http::{HttpHandler, HttpRequest, HttpResponse, HttpServer};
use tokio::net::TcpListener;

/// The NameServer's (and `rocketraft dev`'s) metrics port by default.
pub const NAMESRV_METRICS_PORT_DEFAULT: u16 = 9877;

/// Serves `hub` on `listener` until the returned server is dropped.
pub fn serve(listener: TcpListener, hub: Arc<Hub>) -> std::io::Result<HttpServer> {
    let handler: HttpHandler = Arc::new(move |req: HttpRequest| {
        let hub = hub.clone();
        Box::pin(async move {
            match req.path.as_str() {
                "/metrics" => {
                    // Off the runtime's workers: a scrape reads the metadata store.
                    let text = rocketraft_raft::runtime::run_blocking(move || hub.render()).await;
                    HttpResponse::ok(rocketraft_metrics::CONTENT_TYPE, text)
                }
                "/" => HttpResponse::ok(
                    "text/plain; charset=utf-8",
                    "rocketraft: metrics at /metrics (Prometheus text format)\n",
                ),
                _ => HttpResponse::not_found(),
            }
        })
    });
    HttpServer::start(listener, handler)
}

/// The labels that tell a broker replica's series apart.
pub fn replica_labels(cluster: &str, group: &str, node: u64) -> rocketraft_metrics::Labels {
    vec![("cluster", cluster.to_owned()), ("group", group.to_owned()), ("node", node.to_string())]
}
