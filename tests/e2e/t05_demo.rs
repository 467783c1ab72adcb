//! The README's run command: `consentry demo` forms its cluster, probes its target from
//! both sites, and reports an outage that both sites agree on, with the notification
//! printed to its terminal.

use crate::harness::demo::{http, verdicts, Demo, DEMO_ALERT_TIMEOUT, DEMO_READY_TIMEOUT};
use crate::harness::wait_until;

#[test]
fn demo_runs_and_reports_an_agreed_outage() {
    let demo = Demo::spawn();
    let port = demo.port;
    let printed = || demo.printed();

    info!("the demo prints where the dashboard is and what to try");
    demo.wait_for_welcome();
    let page = http(port, "GET", "/").expect("dashboard");
    assert!(
        page.contains("<title>consentry</title>"),
        "the dashboard is served at /"
    );

    info!("both demo checks become OK, seen fresh from both probing sites");
    wait_until("demo checks OK from two sites", DEMO_READY_TIMEOUT, || {
        let v = verdicts(port)?;
        if v.len() == 2
            && v.iter()
                .all(|(_, verdict, fresh)| verdict == "OK" && *fresh == 2)
        {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });

    info!("break the target: both sites agree, the checks turn CRITICAL and the leader's webhook is printed");
    http(port, "POST", "/api/v1/demo/break").expect("break");
    wait_until("both checks CRITICAL", DEMO_ALERT_TIMEOUT, || {
        let v = verdicts(port + 1)?;
        if v.iter().all(|(_, verdict, _)| verdict == "CRITICAL") {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    wait_until("a FIRING notification line", DEMO_ALERT_TIMEOUT, || {
        let out = printed();
        if out.contains("[notification] FIRING demo-web") {
            Ok(())
        } else {
            Err(out)
        }
    });

    info!("heal it: a RESOLVED line follows");
    http(port, "POST", "/api/v1/demo/heal").expect("heal");
    wait_until("a RESOLVED notification line", DEMO_ALERT_TIMEOUT, || {
        let out = printed();
        if out.contains("[notification] RESOLVED demo-web") {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(
        printed().matches("[notification] FIRING demo-web").count(),
        1,
        "one firing line: {}",
        printed()
    );
}
