//! A multi-host network from Linux network namespaces and veth links (needs root and `ip`).
//!
//! Every site is a namespace with its node's address on its loopback (`10.0.0.<id>`). Each
//! pair of sites has its own veth link (the inter-site links raft uses), each probing site
//! reaches the shared "internet" namespace, where the targets live (`10.9.0.1`), through its
//! own carrier link, and each site has a management link to the test's own namespace, where
//! the CLI, the test's HTTP client and the webhook receiver are (`10.<m>.<id>.1`, API on
//! `10.<m>.<id>.2`, `m` unique per network in the test process). Cutting a link is `ip link set ... down` in the namespace that holds it.
//!
//! ```text
//!            internet (targets 10.9.0.1)
//!           /carrier-a      \carrier-b
//!       site-a ---------- site-b          each site: mgmt link to the test
//!           \              /
//!            site-c (witness)
//! ```
//!
//! Dropping the network deletes its namespaces, which deletes every link.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The targets' address in the internet namespace.
pub const TARGET_IP: &str = "10.9.0.1";

/// Whether this process may build namespaces: root, and `ip netns` works.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root".into());
    }
    let probe = format!("csprobe{}", std::process::id());
    ip(&["netns", "add", &probe]).map_err(|e| format!("`ip netns add` failed: {e}"))?;
    ip(&["netns", "del", &probe]).map_err(|e| format!("`ip netns del` failed: {e}"))
}

/// Runs `ip ARGS`; `Err` with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("building the test network: {e}"));
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it opens stay there.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a namespace file this thread opened; it changes only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

/// One site: a namespace with one node.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub node_id: u64,
    pub probe: bool,
    pub ns: String,
    /// Second octet of the management addresses: unique per network in this process, since
    /// every test's management links live in the test process's own namespace.
    mgmt_net: u8,
}

impl Site {
    /// The node's raft address (on the site's loopback).
    pub fn node_ip(&self) -> String {
        format!("10.0.0.{}", self.node_id)
    }

    /// The node's API address (its end of the management link).
    pub fn mgmt_ip(&self) -> String {
        format!("10.{}.{}.2", self.mgmt_net, self.node_id)
    }

    /// The test's end of the site's management link.
    pub fn test_side_ip(&self) -> String {
        format!("10.{}.{}.1", self.mgmt_net, self.node_id)
    }
}

/// The namespaces and links of one test.
pub struct Net {
    /// Starts the names of this network's namespaces: `cs<pid>x<n>`, so a later run can
    /// tell a leftover of a test process that is gone.
    prefix: String,
    /// Starts the names of its links in the test's own namespace (at most 15 bytes each).
    link_prefix: String,
    internet: String,
    mgmt_net: u8,
    /// Every namespace made, deleted on drop (also when building failed half-way).
    namespaces: Vec<String>,
    sites: Vec<Site>,
    /// Inter-site links made so far (numbers the /30 subnets).
    links: u32,
    /// Static routes: (namespace, destination, gateway). The kernel deletes a route when its
    /// device goes down, so healing a link puts them back.
    routes: Vec<(String, String, String)>,
}

static NETS: AtomicU32 = AtomicU32::new(0);

/// Deletes the namespaces of test processes that are gone (a run killed before its drops
/// ran), and stops what still runs in them: their management links would otherwise keep
/// the addresses this run's networks use.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("cs")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<libc::pid_t>() {
                    // SAFETY: kill(2) of a process left in a test namespace.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = ip(&["netns", "del", name]);
    }
}

impl Net {
    /// The internet namespace, empty of sites.
    pub fn new() -> Self {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(remove_leftovers);
        let n = NETS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("cs{pid}x{n}");
        let link_prefix = format!("c{}x{n}", pid % 100_000);
        let internet = format!("{prefix}-inet");
        must(&["netns", "add", &internet]);
        let net = Self {
            prefix,
            link_prefix,
            internet: internet.clone(),
            mgmt_net: 100 + u8::try_from(n % 100).expect("below 100"),
            namespaces: vec![internet.clone()],
            sites: Vec::new(),
            links: 0,
            routes: Vec::new(),
        };
        must(&["-n", &internet, "link", "set", "lo", "up"]);
        must(&[
            "-n",
            &internet,
            "addr",
            "add",
            &format!("{TARGET_IP}/32"),
            "dev",
            "lo",
        ]);
        net
    }

    pub fn internet(&self) -> &str {
        &self.internet
    }

    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
    }

    /// Adds a site with its node `node_id`, linked to every site so far, and (when it
    /// probes) to the internet through its own carrier.
    pub fn add_site(&mut self, name: &str, node_id: u64, probe: bool) -> Site {
        assert!((1..=250).contains(&node_id), "node ids 1..=250");
        let ns = format!("{}-{name}", self.prefix);
        must(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        let site = Site {
            name: name.to_owned(),
            node_id,
            probe,
            ns: ns.clone(),
            mgmt_net: self.mgmt_net,
        };
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/32", site.node_ip()),
            "dev",
            "lo",
        ]);

        // Management: the test's namespace <-> the site.
        let root_if = format!("{}m{node_id}", self.link_prefix);
        must(&[
            "link", "add", "name", &root_if, "type", "veth", "peer", "name", "mgmt", "netns", &ns,
        ]);
        must(&[
            "addr",
            "add",
            &format!("{}/30", site.test_side_ip()),
            "dev",
            &root_if,
        ]);
        must(&["link", "set", &root_if, "up"]);
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/30", site.mgmt_ip()),
            "dev",
            "mgmt",
        ]);
        must(&["-n", &ns, "link", "set", "mgmt", "up"]);
        let mgmt_all = format!("10.{}.0.0/16", self.mgmt_net);
        must(&[
            "-n",
            &ns,
            "route",
            "add",
            &mgmt_all,
            "via",
            &site.test_side_ip(),
        ]);

        if probe {
            // The carrier: the site <-> the internet.
            let inet_if = format!("site{node_id}");
            must(&[
                "-n",
                &ns,
                "link",
                "add",
                "name",
                "uplink",
                "type",
                "veth",
                "peer",
                "name",
                &inet_if,
                "netns",
                &self.internet,
            ]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.1.{node_id}.1/30"),
                "dev",
                "uplink",
            ]);
            must(&["-n", &ns, "link", "set", "uplink", "up"]);
            let inet = self.internet.clone();
            must(&[
                "-n",
                &inet,
                "addr",
                "add",
                &format!("10.1.{node_id}.2/30"),
                "dev",
                &inet_if,
            ]);
            must(&["-n", &inet, "link", "set", &inet_if, "up"]);
            self.route(&ns, "10.9.0.0/24", &format!("10.1.{node_id}.2"));
        }

        // Inter-site links to every site so far.
        for other in self.sites.clone() {
            self.links += 1;
            let k = self.links;
            let here = format!("to{}", other.node_id);
            let there = format!("to{node_id}");
            must(&[
                "-n", &ns, "link", "add", "name", &here, "type", "veth", "peer", "name", &there,
                "netns", &other.ns,
            ]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.2.{k}.1/30"),
                "dev",
                &here,
            ]);
            must(&[
                "-n",
                &other.ns,
                "addr",
                "add",
                &format!("10.2.{k}.2/30"),
                "dev",
                &there,
            ]);
            must(&["-n", &ns, "link", "set", &here, "up"]);
            must(&["-n", &other.ns, "link", "set", &there, "up"]);
            self.route(
                &ns,
                &format!("{}/32", other.node_ip()),
                &format!("10.2.{k}.2"),
            );
            self.route(
                &other.ns,
                &format!("{}/32", site.node_ip()),
                &format!("10.2.{k}.1"),
            );
        }
        self.sites.push(site.clone());
        site
    }

    fn route(&mut self, ns: &str, to: &str, via: &str) {
        must(&["-n", ns, "route", "replace", to, "via", via]);
        self.routes
            .push((ns.to_owned(), to.to_owned(), via.to_owned()));
    }

    /// Puts back every static route whose link is up (after a heal).
    fn restore_routes(&self) {
        for (ns, to, via) in &self.routes {
            // A route over a link that is still down is refused; it comes back with its link.
            let _ = ip(&["-n", ns, "route", "replace", to, "via", via]);
        }
    }

    /// Cuts (`up = false`) or heals a site's carrier to the internet.
    pub fn set_carrier(&self, site: &str, up: bool) {
        self.set_links(&self.site(site).ns, &["uplink".to_owned()], up);
    }

    /// Cuts or heals every inter-site link of `site`: a partition that isolates it.
    pub fn set_isolated(&self, site: &str, isolated: bool) {
        let site = self.site(site);
        let links: Vec<String> = self
            .sites
            .iter()
            .filter(|o| o.name != site.name)
            .map(|o| format!("to{}", o.node_id))
            .collect();
        self.set_links(&site.ns, &links, !isolated);
    }

    /// `ip link set dev LINK up|down` in `ns`; a heal puts the static routes back.
    fn set_links(&self, ns: &str, links: &[String], up: bool) {
        for link in links {
            must(&[
                "-n",
                ns,
                "link",
                "set",
                "dev",
                link,
                if up { "up" } else { "down" },
            ]);
        }
        if up {
            self.restore_routes();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the links in it, and so their peers.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
