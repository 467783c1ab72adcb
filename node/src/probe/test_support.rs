//! Helpers the probe tests share: one-shot fake servers and verdict assertions.

use std::future::Future;
use std::time::Duration;

use consentry_cluster::model::{
    CheckSpec, Credentials, ProbeResult, ProbeSpec, Reason, SqlEngine, SqlSpec, Status,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bound on any one test step, so a regression fails instead of hanging.
pub(crate) const TEST_STEP_MS: u64 = 5_000;

/// Starts a fake server on 127.0.0.1 that runs `script` on its first connection.
pub(crate) async fn serve_once<F, Fut>(script: F) -> (u16, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        script(socket).await;
    });
    (port, task)
}

/// Waits for a fake server's script to end, failing the test if it takes too long.
pub(crate) async fn finish(task: JoinHandle<()>) {
    tokio::time::timeout(Duration::from_millis(TEST_STEP_MS), task)
        .await
        .expect("server finished in time")
        .expect("server task");
}

pub(crate) fn assert_verdict(result: &ProbeResult, status: Status, reason: Reason) {
    assert_eq!(
        (result.status, result.reason),
        (status, reason),
        "{result:?}"
    );
}

/// A SQL check against 127.0.0.1:`port`, database `app`, 2 s timeout.
pub(crate) fn sql_check(
    engine: SqlEngine,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> CheckSpec {
    let mut check = CheckSpec::for_test("sql-test");
    check.probe = ProbeSpec::Sql(SqlSpec {
        engine,
        host: "127.0.0.1".to_string(),
        port,
        credentials: credentials.map(|(user, password)| Credentials {
            user: user.to_string(),
            password: password.to_string(),
        }),
        database: Some("app".to_string()),
        query: None,
    });
    check.timeout_ms = 2_000;
    check
}
