//! Failure modes: expired watches (410 -> relist), dropped connections, an unavailable
//! server, bookmarks and watch timeouts, all seen through an unmodified kube client.

mod common;

use common::*;
use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{watcher, Config, Event};
use kube::runtime::WatchStreamExt;
use std::time::Duration;

fn watch_requests(server: &FakeApiServer) -> Vec<String> {
    server
        .request_log()
        .into_iter()
        .filter(|l| l.contains("watch=true"))
        .collect()
}

fn list_requests(server: &FakeApiServer) -> usize {
    server
        .request_log()
        .iter()
        .filter(|l| l.starts_with("GET /api/v1/pods?") && !l.contains("watch=true"))
        .count()
}

/// Expects errors (at least one mentioning `needle`), then a relist with `want`.
async fn relist(w: &mut Watch<Pod>, needle: &str, want: &[&str]) {
    let (first, errors) = w.next_ok().await;
    assert!(
        matches!(first, Event::Init),
        "expected Init, got {}",
        describe(&first)
    );
    assert!(errors.iter().any(|e| e.contains(needle)), "{errors:#?}");
    let mut names = Vec::new();
    loop {
        match w.next().await.expect("no errors during the relist") {
            Event::InitApply(p) => names.push(p.metadata.name.unwrap()),
            Event::InitDone => break,
            other => panic!("unexpected {}", describe(&other)),
        }
    }
    names.sort();
    assert_eq!(names, want);
}

#[tokio::test]
async fn expired_watches_relist_and_converge() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    server.apply(pod("a", "p2", "web", "n1"));
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher(api.clone(), Config::default()).default_backoff());
    assert_eq!(w.initial_names().await, vec!["p1", "p2"]);
    wait_watches(&server, 1).await;
    server.apply(pod("a", "p3", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p3)");
    let old_rv = server.resource_version().to_string();
    assert!(server.delete("Pod", Some("a"), "p1"));
    assert_eq!(w.next_desc().await, "Delete(p1)");

    server.expire_watches();
    relist(&mut w, "too old", &["p2", "p3"]).await;
    assert_eq!(list_requests(&server), 2);
    server.apply(pod("b", "p4", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p4)");

    // A watch from before the compaction point gets 410 as its first event.
    let mut raw = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match bounded("a 410", raw.next()).await {
        Some(Ok(WatchEvent::Error(s))) => assert_eq!(s.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(bounded("the end of the 410 watch", raw.next())
        .await
        .is_none());

    // So does a continue token from before it.
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    server.apply(pod("b", "p5", "web", "n1"));
    server.expire_watches();
    let token = page.metadata.continue_.unwrap();
    let err = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );
    assert_eq!(w.next_desc().await, "Apply(p5)");
    relist(&mut w, "too old", &["p2", "p3", "p4", "p5"]).await;
}

#[tokio::test]
async fn history_window_overflow_is_gone() {
    let server = FakeApiServer::start().await;
    server.set_history_limit(3);
    let start = server.resource_version().to_string();
    for i in 0..5 {
        server.apply(pod("a", &format!("p{i}"), "web", "n1"));
    }
    let api = Api::<Pod>::all(server.client());
    let mut raw = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match bounded("a 410", raw.next()).await {
        Some(Ok(WatchEvent::Error(s))) => assert_eq!(s.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // Within the window the retained events are replayed.
    let recent = (server.resource_version() - 2).to_string();
    let mut raw = api
        .watch(&WatchParams::default(), &recent)
        .await
        .unwrap()
        .boxed();
    for want in ["p3", "p4"] {
        match bounded("a replayed event", raw.next()).await {
            Some(Ok(WatchEvent::Added(p))) => assert_eq!(p.metadata.name.as_deref(), Some(want)),
            other => panic!("expected ADDED {want}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropped_connections_resume_without_relist() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher(api, Config::default()).default_backoff());
    assert_eq!(w.initial_names().await, vec!["p1"]);
    wait_watches(&server, 1).await;
    let listed_at = server.resource_version();
    server.drop_connections();
    assert_eq!(server.open_watches(), 0);
    server.apply(pod("a", "p2", "web", "n1"));
    server.delete("Pod", Some("a"), "p1");
    assert_eq!(w.next_desc().await, "Apply(p2)");
    assert_eq!(w.next_desc().await, "Delete(p1)");
    wait_watches(&server, 1).await;
    let watches = watch_requests(&server);
    assert_eq!(watches.len(), 2, "{watches:#?}");
    assert!(
        watches[1].contains(&format!("resourceVersion={listed_at}")),
        "{watches:#?}"
    );
    assert_eq!(list_requests(&server), 1, "resumed, not relisted");
}

#[tokio::test]
async fn unavailable_server_then_back() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher(api.clone(), Config::default()).default_backoff());
    assert_eq!(w.initial_names().await, vec!["p1"]);
    wait_watches(&server, 1).await;

    // Down: the watch is dropped and every request gets 503; changes happen meanwhile.
    server.set_available(false);
    assert_eq!(server.open_watches(), 0);
    // (kube's client retries 503s for minutes by default; this one must not.)
    let mut config = server.client_config();
    config.default_retry = false;
    let once = Api::<Pod>::namespaced(kube::Client::try_from(config).unwrap(), "a");
    let err = once.get("p1").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 503),
        "{err:?}"
    );
    server.apply(pod("a", "p2", "web", "n1"));
    server.delete("Pod", Some("a"), "p1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.set_available(true);
    assert_eq!(w.next_desc().await, "Apply(p2)");
    assert_eq!(w.next_desc().await, "Delete(p1)");
    assert!(server.request_log().len() > 3);

    // Down again, and the history is lost meanwhile (a restarted server): 410, relist.
    wait_watches(&server, 1).await;
    server.set_available(false);
    server.apply(pod("a", "p3", "web", "n1"));
    server.expire_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.set_available(true);
    relist(&mut w, "too old", &["p2", "p3"]).await;
    server.apply(pod("a", "p4", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p4)");
}

#[tokio::test]
async fn bookmarks_do_not_disturb_the_watcher() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher(api.clone(), Config::default()).default_backoff());
    assert_eq!(w.initial_names().await, vec!["p1"]);
    wait_watches(&server, 1).await;
    // Unrelated changes move the resourceVersion; bookmarks carry it to the watcher.
    server.apply(namespace("elsewhere"));
    server.apply(netpol("a", "deny"));
    let bookmarked = server.resource_version();
    server.send_bookmarks();
    server.send_bookmarks();
    w.assert_quiet(Duration::from_millis(200)).await;
    // The watcher resumes from the bookmark's resourceVersion.
    server.drop_connections();
    wait_watches(&server, 1).await;
    let watches = watch_requests(&server);
    assert!(
        watches
            .last()
            .unwrap()
            .contains(&format!("resourceVersion={bookmarked}")),
        "{watches:#?}"
    );
    server.apply(pod("a", "p2", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p2)");

    // Raw watches: bookmarks only for those that asked.
    let rv = server.resource_version().to_string();
    let mut with = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut without = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    wait_watches(&server, 3).await;
    server.send_bookmarks();
    match bounded("a bookmark", with.next()).await {
        Some(Ok(WatchEvent::Bookmark(b))) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    server.apply(pod("a", "p3", "web", "n1"));
    match bounded("an event", without.next()).await {
        Some(Ok(WatchEvent::Added(p))) => assert_eq!(p.metadata.name.as_deref(), Some("p3")),
        other => panic!("expected ADDED p3, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_timeout_closes_cleanly() {
    let server = FakeApiServer::start().await;
    let api = Api::<Pod>::all(server.client());
    let rv = server.resource_version().to_string();
    let mut raw = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(bounded("the end of the watch", raw.next()).await.is_none());
    drop(raw);
    // The watcher re-watches after each timeout without errors or relists.
    let mut w = Watch::spawn(watcher(api, Config::default().timeout(1)));
    assert!(w.initial_names().await.is_empty());
    bounded("a second watch request", async {
        while watch_requests(&server).len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.apply(pod("a", "p1", "web", "n1"));
    match w.next().await {
        Ok(Event::Apply(p)) => assert_eq!(p.metadata.name.as_deref(), Some("p1")),
        Ok(other) => panic!("expected Apply(p1), got {}", describe(&other)),
        Err(e) => panic!("expected no error, got {e}"),
    }
    assert_eq!(list_requests(&server), 1);
}

#[tokio::test]
async fn closed_watches_are_forgotten() {
    let server = FakeApiServer::start().await;
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher(api.clone(), Config::default()));
    assert!(w.initial_names().await.is_empty());
    wait_watches(&server, 1).await;
    drop(w);
    wait_watches(&server, 0).await;
}
