//! A test's world: its temporary directory, certificates, node processes, the tokio
//! runtime for the in-process servers, and the CLI and HTTP calls that observe the cluster.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::runtime::{Handle, Runtime};

use super::cli::{run_cli, CliOutput};
use super::node::{NodeProc, NodeSpec, TlsPaths};
use super::poll::wait_until;
use super::views::{parse, ClusterView, IncidentView, IncidentsView, StatusView};

/// Time for three fresh processes to elect a leader and agree on it.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Time from `apply` to every check showing OK from both probing sites.
pub const CHECKS_OK_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of one HTTP call the test makes to a node's API.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The probing sites and the witness, as the pinned scenario names them.
pub const SITE_A: &str = "site-a";
pub const SITE_B: &str = "site-b";
pub const SITE_C: &str = "site-c";

/// Knobs for the three-node cluster.
#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    /// `probe_source_ip` per node id.
    pub probe_source_ip: Vec<(u64, String)>,
    /// More node.toml for every node (tables, e.g. `[raft]`).
    pub extra_config: String,
}

/// Everything one test owns. Dropping it kills every node (SIGKILL), stops the servers
/// and removes the directory; when the test is panicking it first prints the node logs.
pub struct World {
    nodes: Vec<NodeProc>,
    /// The ids of the cluster's initial members (a foreign node is not one).
    member_ids: Vec<u64>,
    http: reqwest::Client,
    rt: Runtime,
    root: PathBuf,
    certs_dir: PathBuf,
    token: String,
    dir: Option<TempDir>,
    /// The namespaces of a multi-host world; dropped after the nodes are killed.
    net: Option<super::netns::Net>,
}

impl World {
    /// A directory with a CA, node certificates for 1,2,3 and an API token.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("consentry-e2e-")
            .tempdir()
            .expect("create test tempdir");
        let root = dir.path().to_path_buf();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("build tokio runtime");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("build HTTP client");
        let certs_dir = root.join("certs");
        certs_init(&root, &certs_dir, &[1, 2, 3]);
        let token = read_token(&certs_dir.join("api.token"));
        Self {
            nodes: Vec::new(),
            member_ids: Vec::new(),
            http,
            rt,
            root,
            certs_dir,
            token,
            dir: Some(dir),
            net: None,
        }
    }

    /// One node per site of `net`, each in its site's namespace, formed from one
    /// `initial_member` list whose API URLs are the management addresses. `extra` is more
    /// node.toml for every node.
    pub fn multi_host(net: super::netns::Net, sites: &[&str], extra: &str) -> Self {
        let mut world = Self::new();
        let specs: Vec<NodeSpec> = sites
            .iter()
            .map(|name| net_spec(net.site(name), extra, false))
            .collect();
        world.start_members(&specs, "in their own network namespaces");
        world.net = Some(net);
        world
    }

    /// Writes each node's config with `specs` as its `initial_member` list, makes them the
    /// members, and starts them.
    fn start_members(&mut self, specs: &[NodeSpec], how: &str) {
        for spec in specs {
            let tls = self.tls_for(spec.id);
            self.nodes
                .push(NodeProc::create(&self.root, spec.clone(), &tls, specs));
        }
        self.member_ids = specs.iter().map(|s| s.id).collect();
        info!(
            "starting nodes {how}: {}",
            specs
                .iter()
                .map(|s| format!(
                    "{} ({}) raft {} api {}",
                    s.id,
                    s.site,
                    s.raft_addr(),
                    s.api_url()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for node in &self.nodes {
            node.start(&self.root);
        }
    }

    /// The namespaces of a multi-host world.
    pub fn net(&self) -> &super::netns::Net {
        self.net.as_ref().expect("not a multi-host world")
    }

    /// Adds site `name` with node `id` to the multi-host network, issues the node a
    /// certificate and starts it with `join = true` in its namespace.
    pub fn start_joining_site(&mut self, name: &str, id: u64, extra: &str) -> NodeSpec {
        let site = self
            .net
            .as_mut()
            .expect("not a multi-host world")
            .add_site(name, id, true);
        self.issue_cert(id);
        let spec = net_spec(&site, extra, true);
        self.start_joining(spec)
    }

    fn issue_cert(&self, id: u64) {
        let dir_arg = self.certs_dir.to_string_lossy().into_owned();
        run_cli(
            &self.root,
            [
                "certs",
                "issue",
                "--dir",
                dir_arg.as_str(),
                "--nodes",
                &id.to_string(),
            ],
            &[],
        )
        .expect_success();
    }

    fn tls_for(&self, id: u64) -> TlsPaths {
        TlsPaths {
            // Relative on purpose: the node must resolve them against node.toml's directory.
            ca: "../certs/ca.pem".to_owned(),
            cert: format!("../certs/node-{id}.pem"),
            key: format!("../certs/node-{id}.key"),
            token_file: self.certs_dir.join("api.token"),
        }
    }

    /// Site-a (node 1), site-b (node 2) and the witness site-c (node 3, `probe = false`),
    /// started as separate processes from the same `initial_member` list, and formed.
    pub fn three_nodes(options: &WorldOptions) -> Self {
        let mut world = Self::new();
        let specs: Vec<NodeSpec> = [(1, SITE_A, true), (2, SITE_B, true), (3, SITE_C, false)]
            .into_iter()
            .map(|(id, site, probe)| NodeSpec {
                probe_source_ip: options
                    .probe_source_ip
                    .iter()
                    .find(|(node, _)| *node == id)
                    .map(|(_, ip)| ip.clone()),
                extra: options.extra_config.clone(),
                ..NodeSpec::loopback(id, site, probe)
            })
            .collect();
        world.start_members(&specs, "from one initial_member list");
        world
    }

    /// Starts a node that is not a member, with a certificate from a second CA it made
    /// with its own `certs init`; it trusts the real CA, so only its own identity is foreign.
    pub fn start_foreign_node(&mut self, id: u64, site: &str) -> u64 {
        let other = self.root.join("other-ca");
        certs_init(&self.root, &other, &[id]);
        let spec = NodeSpec::loopback(id, site, false);
        let mut members: Vec<NodeSpec> = self.nodes.iter().map(|n| n.spec.clone()).collect();
        members.push(spec.clone());
        let tls = TlsPaths {
            ca: "../certs/ca.pem".to_owned(),
            cert: format!("../other-ca/node-{id}.pem"),
            key: format!("../other-ca/node-{id}.key"),
            token_file: other.join("api.token"),
        };
        let node = NodeProc::create(&self.root, spec, &tls, &members);
        node.start(&self.root);
        self.nodes.push(node);
        id
    }

    /// Issues node `id` a certificate from the cluster's CA (`consentry certs issue`) and
    /// starts it with `join = true`, so it waits for `consentry cluster add`. Not a member
    /// until the test makes it one ([`World::set_members`]).
    pub fn start_joining_node(
        &mut self,
        id: u64,
        site: &str,
        probe: bool,
        extra: &str,
    ) -> NodeSpec {
        self.issue_cert(id);
        let spec = NodeSpec {
            join: true,
            extra: extra.to_owned(),
            ..NodeSpec::loopback(id, site, probe)
        };
        self.start_joining(spec)
    }

    /// Starts a node with `join = true` and no member list.
    fn start_joining(&mut self, spec: NodeSpec) -> NodeSpec {
        let tls = self.tls_for(spec.id);
        let node = NodeProc::create(&self.root, spec.clone(), &tls, &[]);
        node.start(&self.root);
        self.nodes.push(node);
        spec
    }

    /// The nodes the test now counts as members (after adding or removing some).
    pub fn set_members(&mut self, ids: &[u64]) {
        self.member_ids = ids.to_vec();
    }

    pub fn handle(&self) -> Handle {
        self.rt.handle().clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn token_file(&self) -> PathBuf {
        self.certs_dir.join("api.token")
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.id() == id)
            .unwrap_or_else(|| panic!("no node {id} in this world"))
    }

    pub fn api(&self, id: u64) -> String {
        self.node(id).api_url()
    }

    /// Member nodes the harness has running (a foreign node is not a member).
    pub fn running_members(&self) -> Vec<u64> {
        self.member_ids
            .iter()
            .copied()
            .filter(|id| self.node(*id).is_running())
            .collect()
    }

    /// A running member to read status from: reads are served from local applied state.
    pub fn reader(&self) -> u64 {
        *self
            .running_members()
            .first()
            .expect("no member node is running")
    }

    pub fn kill9(&self, id: u64) {
        self.node(id).kill9();
    }

    pub fn restart(&self, id: u64) {
        self.node(id).start(&self.root);
    }

    /// Panics, with the node's log, when a node the harness started has exited on its own.
    pub fn ensure_alive(&self) {
        for node in &self.nodes {
            if let Some(status) = node.unexpected_exit() {
                panic!(
                    "node {} exited on its own ({status}); its log {}:\n{}",
                    node.id(),
                    node.log_path.display(),
                    node.log_tail()
                );
            }
        }
    }

    /// `wait_until` that also fails at once when a node process dies.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        wait_until(what, timeout, || {
            self.ensure_alive();
            probe()
        })
    }

    /// Runs the CLI from the test's root directory.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.root, args, &[])
    }

    /// Runs the CLI as an operator: with the API token, against node `via`'s API.
    pub fn operator_cli(&self, via: u64, args: &[&str]) -> CliOutput {
        let api = self.api(via);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", api.as_str()]);
        self.token_cli(&all)
    }

    /// Runs the CLI from the test's root with the API token in `CONSENTRY_TOKEN`.
    pub fn token_cli(&self, args: &[&str]) -> CliOutput {
        run_cli(
            &self.root,
            args,
            &[("CONSENTRY_TOKEN", self.token.as_str())],
        )
    }

    /// `consentry cluster add` for `joiner` (a probing node), through node `via`.
    pub fn cluster_add(&self, via: u64, joiner: &NodeSpec) -> CliOutput {
        let id = joiner.id.to_string();
        let (addr, api) = (joiner.raft_addr(), joiner.api_url());
        self.operator_cli(
            via,
            &[
                "cluster",
                "add",
                "--id",
                &id,
                "--addr",
                &addr,
                "--site",
                &joiner.site,
                "--node-api",
                &api,
            ],
        )
    }

    /// Runs the CLI from `cwd` with extra environment.
    pub fn cli_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        run_cli(cwd, args, env)
    }

    /// `consentry cluster status --json --api <node id's API>`.
    pub fn cluster_view(&self, id: u64) -> Result<ClusterView, String> {
        let out = self.cli(&["cluster", "status", "--json", "--api", &self.api(id)]);
        if !out.success() {
            return Err(out.describe());
        }
        parse(&format!("cluster status of node {id}"), &out.stdout)
    }

    /// `consentry status --json --api <node id's API>`.
    pub fn status_view(&self, id: u64) -> Result<StatusView, String> {
        let out = self.cli(&["status", "--json", "--api", &self.api(id)]);
        if !out.success() {
            return Err(out.describe());
        }
        parse(&format!("status of node {id}"), &out.stdout)
    }

    /// `consentry incidents --json --api <node id's API>`.
    pub fn incidents_view(&self, id: u64) -> Result<Vec<IncidentView>, String> {
        let out = self.cli(&["incidents", "--json", "--api", &self.api(id)]);
        if !out.success() {
            return Err(out.describe());
        }
        parse::<IncidentsView>(&format!("incidents of node {id}"), &out.stdout).map(|v| v.incidents)
    }

    /// Waits until every running member answers `cluster status`, all name the same
    /// running leader, and each lists the initial members as voters. Returns the leader's view.
    pub fn wait_formed(&self, timeout: Duration) -> ClusterView {
        self.wait(
            "every running member to agree on one running leader",
            timeout,
            || {
                let running = self.running_members();
                let mut leaders = BTreeSet::new();
                let mut leader_view = None;
                for id in &running {
                    let view = self.cluster_view(*id)?;
                    let Some(leader) = view.leader else {
                        return Err(format!("node {id} sees no leader (term {})", view.term));
                    };
                    if view.member_ids() != self.member_ids {
                        return Err(format!("node {id} lists members {:?}", view.member_ids()));
                    }
                    if let Some(m) = view.members.iter().find(|m| m.role != "voter") {
                        return Err(format!("node {id} lists member {} as {}", m.id, m.role));
                    }
                    leaders.insert(leader);
                    if leader == *id {
                        leader_view = Some(view);
                    }
                }
                if leaders.len() != 1 {
                    return Err(format!("members disagree on the leader: {leaders:?}"));
                }
                leader_view.ok_or_else(|| {
                    format!("leader {leaders:?} is not a running member ({running:?})")
                })
            },
        )
    }

    /// The current leader's id (waits for agreement).
    pub fn leader(&self) -> u64 {
        self.wait_formed(FORM_TIMEOUT).node_id
    }

    /// Writes `checks.toml` in the root and runs `consentry apply` against the leader's
    /// API with `CONSENTRY_TOKEN`.
    pub fn apply(&self, checks_toml: &str) -> CliOutput {
        let path = self.root.join("checks.toml");
        fs::write(&path, checks_toml).expect("write checks.toml");
        // Through a follower: writes sent to any node must reach the leader.
        let leader = self.leader();
        let via = self
            .nodes
            .iter()
            .map(|n| n.id())
            .find(|id| *id != leader && self.node(*id).is_running())
            .unwrap_or(leader);
        let api = self.api(via);
        self.cli_in(
            &self.root,
            &["apply", "-f", "checks.toml", "--api", &api],
            &[("CONSENTRY_TOKEN", &self.token)],
        )
    }

    /// Waits until `status` shows every named check OK from site-a and site-b (fresh) and
    /// no result from the witness site-c.
    pub fn wait_checks_ok(&self, names: &[&str], timeout: Duration) -> StatusView {
        let status = self.wait_checks_ok_from(self.reader(), names, &[SITE_A, SITE_B], timeout);
        for name in names {
            let check = status.check(name).expect("checked above");
            if let Some(c) = check.site(SITE_C).filter(|c| c.status.is_some()) {
                panic!("the witness site-c has a result: {}", c.describe());
            }
        }
        status
    }

    /// Waits until node `via` shows every named check OK, and OK and fresh from each of
    /// `sites`.
    pub fn wait_checks_ok_from(
        &self,
        via: u64,
        names: &[&str],
        sites: &[&str],
        timeout: Duration,
    ) -> StatusView {
        self.wait(
            &format!("checks {names:?} OK and fresh from {sites:?} on node {via}"),
            timeout,
            || {
                let status = self.status_view(via)?;
                for name in names {
                    let check = status.check(name)?;
                    let fresh_ok = sites
                        .iter()
                        .all(|site| check.site(site).is_some_and(|s| s.is_ok() && s.fresh));
                    if check.verdict != "OK" || !fresh_ok {
                        return Err(check.describe());
                    }
                }
                Ok(status)
            },
        )
    }

    /// GET `url`; `Ok((status, body))`, or `Err` when no response came.
    pub fn http_get(&self, url: &str) -> Result<(u16, String), String> {
        let request = self.http.get(url);
        self.send(request, url)
    }

    /// PUT `body` to `url`, with `Authorization: Bearer <token>` when given.
    pub fn http_put(
        &self,
        url: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<(u16, String), String> {
        let mut request = self
            .http
            .put(url)
            .header("content-type", "application/toml")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request, url)
    }

    fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<(u16, String), String> {
        self.rt.block_on(async {
            let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = response.status().as_u16();
            let body = response
                .text()
                .await
                .map_err(|e| format!("{url}: reading body: {e}"))?;
            Ok((status, body))
        })
    }

    fn print_logs(&self) {
        for node in &self.nodes {
            eprintln!(
                "\n===== node {} ({}) running={} log {} (last lines) =====\n{}",
                node.id(),
                node.spec.site,
                node.is_running(),
                node.log_path.display(),
                node.log_tail()
            );
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.print_logs();
        }
        for node in &self.nodes {
            node.kill9();
        }
        let keep = std::env::var("CONSENTRY_E2E_KEEP").unwrap_or_default();
        if (failed && !keep.is_empty()) || keep == "always" {
            if let Some(dir) = self.dir.take() {
                eprintln!("CONSENTRY_E2E_KEEP: kept {}", dir.keep().display());
            }
        }
    }
}

/// A node in its site's namespace: raft on the site's loopback address, the API on its
/// management address; fixed ports, since every namespace has its own.
fn net_spec(site: &super::netns::Site, extra: &str, join: bool) -> NodeSpec {
    NodeSpec {
        raft_host: site.node_ip(),
        raft_port: 7401,
        api_host: site.mgmt_ip(),
        api_port: 7480,
        join,
        extra: extra.to_owned(),
        netns: Some(site.ns.clone()),
        ..NodeSpec::loopback(site.node_id, &site.name, site.probe)
    }
}

/// `consentry certs init --dir DIR --nodes IDS`, checking the pinned file names.
fn certs_init(cwd: &Path, dir: &Path, ids: &[u64]) {
    let nodes = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let dir_arg = dir.to_string_lossy().into_owned();
    run_cli(
        cwd,
        ["certs", "init", "--dir", &dir_arg, "--nodes", &nodes],
        &[],
    )
    .expect_success();
    let mut expected = vec![
        "ca.pem".to_owned(),
        "ca.key".to_owned(),
        "api.token".to_owned(),
    ];
    for id in ids {
        expected.push(format!("node-{id}.pem"));
        expected.push(format!("node-{id}.key"));
    }
    for file in expected {
        assert!(
            dir.join(&file).is_file(),
            "`certs init --dir {} --nodes {nodes}` did not write {file}",
            dir.display()
        );
    }
}

fn read_token(path: &Path) -> String {
    let token = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let token = token.trim().to_owned();
    assert!(!token.is_empty(), "{} is empty", path.display());
    token
}
