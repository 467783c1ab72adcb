//! Prometheus Alertmanager (Debian `prometheus-alertmanager`) from a temporary config on a
//! free 127.0.0.1 port, gossip disabled (`--cluster.listen-address=` empty). It routes
//! every alert to one webhook receiver with `send_resolved: true`, grouping per incident
//! and flushing after a second, so a test sees both what its API lists and what it sends.

use std::process::Command;

use super::{binary, Daemon, ServerDir, Unavailable};
use crate::harness::free_tcp_port;

pub struct Alertmanager {
    pub port: u16,
    _daemon: Daemon,
}

impl Alertmanager {
    /// Starts Alertmanager sending its notifications to `webhook_url`.
    pub fn start(dir: &ServerDir, webhook_url: &str) -> Result<Self, Unavailable> {
        let bin = binary(
            &["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"],
            "prometheus-alertmanager",
        )?;
        let port = free_tcp_port();
        let d = dir.mkdir("alertmanager");
        let conf = format!(
            r#"route:
  receiver: hook
  group_by: ['alertname', 'consentry_incident']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{webhook_url}"
        send_resolved: true
"#
        );
        let conf_path = dir.write("alertmanager/alertmanager.yml", &conf);
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", conf_path.display()))
            .arg(format!("--storage.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let daemon = Daemon::spawn("alertmanager", cmd, &d.join("alertmanager.log"), &[]);
        daemon.wait_tcp(port);
        Ok(Self {
            port,
            _daemon: daemon,
        })
    }

    /// The base URL the `alertmanager` notifier takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
