//! The kube-runtime watcher against the fake server: initial list, live events,
//! pagination, streaming lists and selectors.

mod common;

use common::*;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Config};
use kube::runtime::WatchStreamExt;
use serde_json::{json, Value};
use std::fmt::Debug;

/// Init/InitApply*/InitDone with every object, then Apply on create and on update,
/// Delete on delete.
async fn lifecycle<K>(server: &FakeApiServer, api: Api<K>, initial: Vec<Value>, extra: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
{
    let mut want: Vec<String> = initial
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    for o in initial {
        server.apply(o);
    }
    let mut w = Watch::spawn(watcher::watcher(api, Config::default()));
    assert_eq!(w.initial_names().await, want);
    let name = extra["metadata"]["name"].as_str().unwrap().to_string();
    let kind = extra["kind"].as_str().unwrap().to_string();
    let ns = extra["metadata"]["namespace"].as_str().map(str::to_string);
    server.apply(extra.clone());
    assert_eq!(w.next_desc().await, format!("Apply({name})"));
    let mut changed = extra;
    changed["metadata"]["labels"] = json!({"changed": "yes"});
    server.apply(changed);
    match w.next_ok().await.0 {
        watcher::Event::Apply(o) => assert_eq!(o.meta().labels.as_ref().unwrap()["changed"], "yes"),
        other => panic!("expected Apply, got {}", describe(&other)),
    }
    assert!(server.delete(&kind, ns.as_deref(), &name));
    assert_eq!(w.next_desc().await, format!("Delete({name})"));
    assert!(!server.delete(&kind, ns.as_deref(), &name));
}

#[tokio::test]
async fn pods_namespaces_and_policies_lifecycle() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    lifecycle(
        &server,
        Api::<Pod>::all(client.clone()),
        vec![
            pod("a", "p1", "web", "n1"),
            pod("b", "p2", "db", "n2"),
            pod("a", "p0", "web", "n1"),
        ],
        pod("c", "p3", "web", "n1"),
    )
    .await;
    lifecycle(
        &server,
        Api::<Namespace>::all(client.clone()),
        vec![namespace("a"), namespace("b")],
        namespace("c"),
    )
    .await;
    lifecycle(
        &server,
        Api::<NetworkPolicy>::all(client.clone()),
        vec![netpol("a", "deny"), netpol("b", "allow")],
        netpol("a", "extra"),
    )
    .await;
    // The namespaced variants of the same collections.
    lifecycle(
        &server,
        Api::<Pod>::namespaced(client.clone(), "b"),
        vec![pod("b", "p2", "db", "n2")],
        pod("b", "p9", "web", "n1"),
    )
    .await;
    let log = server.request_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/pods?") && l.contains("limit=500")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("GET /api/v1/namespaces?")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(
            |l| l.starts_with("GET /apis/networking.k8s.io/v1/networkpolicies?")
                && l.contains("watch=true")
        ),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/namespaces/b/pods?")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn more_than_a_thousand_pods_paginate() {
    let server = FakeApiServer::start().await;
    let n = 1234;
    for i in 0..n {
        server.apply(pod(
            &format!("ns-{}", i % 7),
            &format!("pod-{i:04}"),
            "web",
            "n1",
        ));
    }
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher::watcher(api.clone(), Config::default()));
    let names = w.initial_names().await;
    assert_eq!(names.len(), n);
    assert_eq!(names[0], "pod-0000");
    let pages: Vec<String> = server
        .request_log()
        .into_iter()
        .filter(|l| l.starts_with("GET /api/v1/pods?") && !l.contains("watch=true"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert!(pages[1].contains("continue=") && pages[2].contains("continue="));

    // Pages by hand: consistent resourceVersion, remaining counts, no duplicates.
    let first = api.list(&ListParams::default().limit(1000)).await.unwrap();
    assert_eq!(first.items.len(), 1000);
    assert_eq!(first.metadata.remaining_item_count, Some(234));
    server.apply(pod("zzz", "late", "web", "n1"));
    let token = first.metadata.continue_.clone().unwrap();
    let second = api
        .list(&ListParams::default().limit(1000).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 235);
    assert_eq!(second.metadata.continue_, None);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    // Without a limit, everything at once.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        n + 1
    );
    assert_eq!(w.next_desc().await, "Apply(late)");
}

#[tokio::test]
async fn streaming_list_initial_events() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    server.apply(pod("a", "p2", "web", "n1"));
    let api = Api::<Pod>::all(server.client());
    let mut w = Watch::spawn(watcher::watcher(api, Config::default().streaming_lists()));
    assert_eq!(w.initial_names().await, vec!["p1", "p2"]);
    server.apply(pod("a", "p3", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p3)");
    let log = server.request_log();
    assert!(
        log.iter().any(|l| l.contains("sendInitialEvents=true")
            && l.contains("resourceVersionMatch=NotOlderThan")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("limit=")),
        "no list call: {log:#?}"
    );
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "web-1", "web", "n1"));
    server.apply(pod("a", "web-2", "web", "n2"));
    server.apply(pod("b", "db-1", "db", "n1"));
    let api = Api::<Pod>::all(server.client());
    let names = |l: kube::core::ObjectList<Pod>| {
        let mut v: Vec<String> = l
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        v.sort();
        v
    };
    let on_n1 = api
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(names(on_n1), vec!["db-1", "web-1"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=web-2"))
        .await
        .unwrap();
    assert_eq!(names(by_name), vec!["web-2"]);
    let web = api
        .list(&ListParams::default().labels("app in (web),app!=db"))
        .await
        .unwrap();
    assert_eq!(names(web), vec!["web-1", "web-2"]);
    let bad = api
        .list(&ListParams::default().labels("app in (web"))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kube::Error::Api(ref s) if s.code == 400),
        "{bad:?}"
    );

    // A label-selected watch: leaving the selection is a Delete, entering an Apply.
    let mut w = Watch::spawn(watcher::watcher(
        api.clone(),
        Config::default().labels("app=web"),
    ));
    assert_eq!(w.initial_names().await, vec!["web-1", "web-2"]);
    server.apply(pod("a", "web-1", "db", "n1"));
    assert_eq!(w.next_desc().await, "Delete(web-1)");
    server.apply(pod("b", "db-1", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(db-1)");
    server.apply(pod("b", "db-2", "db", "n1"));
    server.apply(pod("b", "web-3", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(web-3)");

    // A field-selected watch for one node.
    let mut n2 = Watch::spawn(watcher::watcher(
        api,
        Config::default().fields("spec.nodeName=n2"),
    ));
    assert_eq!(n2.initial_names().await, vec!["web-2"]);
    server.apply(pod("a", "new-on-n1", "web", "n1"));
    server.apply(pod("a", "new-on-n2", "web", "n2"));
    assert_eq!(n2.next_desc().await, "Apply(new-on-n2)");
}

#[tokio::test]
async fn metadata_watcher_and_single_gets() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    server.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let client = server.client();
    let api = Api::<PartialObjectMeta<Pod>>::all(client.clone());
    let mut w = Watch::spawn(watcher::watcher(api, Config::default()).default_backoff());
    assert_eq!(w.initial_names().await, vec!["p1"]);
    server.apply(pod("a", "p2", "web", "n1"));
    assert_eq!(w.next_desc().await, "Apply(p2)");

    let pods = Api::<Pod>::namespaced(client.clone(), "a");
    let p = pods.get("p1").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert!(p.metadata.uid.is_some() && p.metadata.creation_timestamp.is_some());
    let missing = pods.get("nope").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{missing:?}"
    );
    assert!(pods.get_opt("nope").await.unwrap().is_none());
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    assert_eq!(
        nodes.get("n1").await.unwrap().metadata.name.as_deref(),
        Some("n1")
    );
    let ns = Api::<Namespace>::all(client.clone());
    server.apply(namespace("a"));
    assert_eq!(
        ns.get("a").await.unwrap().metadata.name.as_deref(),
        Some("a")
    );
    let np = Api::<NetworkPolicy>::namespaced(client, "a");
    server.apply(netpol("a", "deny"));
    assert!(np.get("deny").await.unwrap().spec.is_some());
}
