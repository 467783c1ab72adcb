//! Backup and restore: `consentry snapshot save` from one cluster, `snapshot restore` into a
//! fresh cluster with its own CA; the catalog, silences and incident history come back, the
//! incident open at backup time comes back closed, and the new cluster judges afresh.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::harness::{
    alert_deadline, ChecksFile, CliOutput, Receiver, Target, World, WorldOptions,
    CHECKS_OK_TIMEOUT, FORM_TIMEOUT,
};

fn json_of(out: &CliOutput) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.describe()))
}

/// `consentry incidents --json` of node 1, newest first, as raw JSON.
fn incidents(world: &World) -> Vec<Value> {
    let out = world.cli(&["incidents", "--json", "--api", &world.api(1)]);
    json_of(&out.expect_success())["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_snapshot_restores_into_a_fresh_cluster() {
    let old = World::three_nodes(&WorldOptions::default());
    let web = Target::http(&old.handle(), None);
    let db = Target::tcp(&old.handle());
    let receiver = Receiver::start(&old.handle());
    old.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .tcp("db", db.port())
        .webhook(receiver.url())
        .render();
    old.apply(&checks).expect_success();
    old.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);
    let api = old.api(1);
    old.token_cli(&[
        "silence",
        "add",
        "--match",
        "db",
        "--for",
        "3h",
        "--reason",
        "disk swap",
        "--api",
        &api,
    ])
    .expect_success();

    info!("an outage of web opens an incident in the old cluster");
    web.stop();
    let open = old.wait_one_open_incident("web", alert_deadline());
    info!("open at backup time: {}", open.describe());

    info!("consentry snapshot save");
    let file = old.root().join("backup.snapshot");
    let file_arg = file.to_string_lossy().into_owned();
    let saved = old
        .token_cli(&["snapshot", "save", &file_arg, "--api", &api])
        .expect_success();
    info!("{}", saved.stdout.trim());
    let mode = std::fs::metadata(&file)
        .expect("the snapshot file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the snapshot holds secrets: mode {mode:o}"
    );
    let without_token = old.cli(&["snapshot", "save", &file_arg, "--api", &api]);
    assert!(
        !without_token.success(),
        "saved without the token: {}",
        without_token.describe()
    );

    info!("a fresh cluster with its own CA takes the snapshot");
    let new = World::three_nodes(&WorldOptions::default());
    new.wait_formed(FORM_TIMEOUT);
    let new_api = new.api(2);
    let restored = new
        .token_cli(&[
            "snapshot", "restore", &file_arg, "--api", &new_api, "--json",
        ])
        .expect_success();
    let restored = json_of(&restored);
    assert_eq!(restored["restored"]["checks"], 2, "{restored}");
    assert_eq!(restored["restored"]["silences"], 1, "{restored}");

    let silences = json_of(
        &new.cli(&["silence", "list", "--json", "--api", &new.api(1)])
            .expect_success(),
    );
    assert!(
        silences.to_string().contains("disk swap"),
        "the silence came back: {silences}"
    );
    let back = incidents(&new);
    let old_incident = back
        .iter()
        .find(|i| i["id"].to_string().trim_matches('"') == open.id())
        .unwrap_or_else(|| panic!("incident {} not restored: {back:?}", open.id()));
    assert_eq!(old_incident["state"], "closed", "{old_incident}");
    assert!(
        old_incident["close_note"]
            .to_string()
            .contains("closed by the restore"),
        "{old_incident}"
    );

    info!("web is still down: the new cluster opens an incident of its own, with a new id");
    let old_id: u64 = open.id().parse().expect("numeric id");
    let new_id = new.wait(
        "an open incident for web in the new cluster",
        alert_deadline(),
        || {
            incidents(&new)
                .iter()
                .find(|i| i["check"] == "web" && i["state"] == "open")
                .and_then(|i| i["id"].as_u64())
                .ok_or_else(|| "none open yet".to_owned())
        },
    );
    assert!(
        new_id > old_id,
        "new incident {new_id} reuses an old id (<= {old_id})"
    );

    info!("a second restore is refused: the cluster is no longer fresh");
    let again = new.token_cli(&["snapshot", "restore", &file_arg, "--api", &new_api]);
    assert!(!again.success(), "restored twice: {}", again.describe());
    assert!(again.stderr.contains("fresh"), "{}", again.describe());

    info!("a 10 MB body (over the API's 8 MiB limit for checks files) reaches the restore handler");
    let big = vec![b'x'; 10 * 1024 * 1024];
    let (code, body) = new.handle().block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("client")
            .post(format!("{new_api}/api/v1/snapshot/restore"))
            .bearer_auth(new.token())
            .body(big)
            .send()
            .await
            .expect("POST restore");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    });
    assert_eq!(code, 400, "not a 413 from the body limit: {body}");
    assert!(body.contains("invalid_snapshot"), "{body}");

    info!("a file that is not a snapshot is refused with a reason");
    let junk = new.root().join("junk");
    std::fs::write(&junk, "checks = []\n").expect("write junk");
    let junk_arg = junk.to_string_lossy().into_owned();
    let bad = new.token_cli(&["snapshot", "restore", &junk_arg, "--api", &new_api]);
    assert!(
        !bad.success() && bad.stderr.contains("not a consentry snapshot"),
        "{}",
        bad.describe()
    );
}
