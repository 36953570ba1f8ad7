//! Events through kube's `Recorder`, writes over HTTP, errors and discovery, the wire
//! format of watches, kubeconfigs, and the `fake-apiserver` binary.

mod common;

use common::*;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher::{watcher, Config};
use kube::Resource;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn recorder_events_are_kept() {
    let server = FakeApiServer::start().await;
    let stored = server.apply(pod("team-a", "web-1", "web", "n1"));
    let client = server.client();
    let pod: Pod = serde_json::from_value(stored).unwrap();
    let reporter = Reporter {
        controller: "nftpol".into(),
        instance: Some("node-1".into()),
    };
    let recorder = Recorder::new(client, reporter);
    let event = Event {
        type_: EventType::Warning,
        reason: "PolicyRejected".into(),
        note: Some("port range 90-80 is empty".into()),
        action: "Compile".into(),
        secondary: None,
    };
    bounded("publish", recorder.publish(&event, &pod.object_ref(&())))
        .await
        .unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["apiVersion"], "events.k8s.io/v1");
    assert_eq!(e["reason"], "PolicyRejected");
    assert_eq!(e["note"], "port range 90-80 is empty");
    assert_eq!(e["regarding"]["name"], "web-1");
    assert_eq!(e["metadata"]["namespace"], "team-a");
    assert!(e["metadata"]["uid"].is_string() && e["metadata"]["resourceVersion"].is_string());
    // The same event again is a PATCH adding a series.
    bounded("publish", recorder.publish(&event, &pod.object_ref(&())))
        .await
        .unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);
    let log = server.request_log();
    assert!(log
        .iter()
        .any(|l| l.starts_with("POST /apis/events.k8s.io/v1/namespaces/team-a/events")));
    assert!(log
        .iter()
        .any(|l| l.starts_with("PATCH /apis/events.k8s.io/v1/namespaces/team-a/events/web-1.")));

    // Core v1 Events too.
    let core = Api::<k8s_openapi::api::core::v1::Event>::namespaced(server.client(), "team-a");
    let ev = json!({"metadata": {"generateName": "web-1."}, "reason": "Old", "involvedObject": {"name": "web-1"}});
    let created = core
        .create(&PostParams::default(), &serde_json::from_value(ev).unwrap())
        .await
        .unwrap();
    assert!(created.metadata.name.unwrap().starts_with("web-1."));
    assert_eq!(server.events().len(), 2);
    assert_eq!(server.events()[1]["reason"], "Old");
}

#[tokio::test]
async fn writes_over_http_reach_watchers() {
    let server = FakeApiServer::start().await;
    let api = Api::<Namespace>::all(server.client());
    let mut w = Watch::spawn(watcher(api.clone(), Config::default()));
    assert!(w.initial_names().await.is_empty());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let created = api.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(w.next_desc().await, "Apply(x)");
    let dup = api.create(&PostParams::default(), &ns).await.unwrap_err();
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );
    let patched = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["team"], "a");
    assert_eq!(patched.metadata.uid, created.metadata.uid);
    assert_eq!(w.next_desc().await, "Apply(x)");
    // A stale resourceVersion on replace conflicts.
    let stale = api
        .replace("x", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );
    let applied = api
        .patch(
            "y",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace"})),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("y"));
    assert_eq!(w.next_desc().await, "Apply(y)");
    api.delete("x", &DeleteParams::default()).await.unwrap();
    assert_eq!(w.next_desc().await, "Delete(x)");
    assert!(server.get("Namespace", None, "x").is_none());
    let missing = api.delete("x", &DeleteParams::default()).await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing:?}"
    );
}

/// One raw HTTP/1.1 request (`Connection: close`); the raw response bytes until the
/// server closes. After `quiet` without data `during` runs once; after 3 more quiet
/// seconds reading stops.
async fn raw(server: &FakeApiServer, path: &str, quiet: Duration, during: impl FnOnce()) -> String {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut during = Some(during);
    loop {
        let wait = if during.is_some() {
            quiet
        } else {
            Duration::from_secs(3)
        };
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => match during.take() {
                Some(f) => f(),
                None => break,
            },
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn wire_format() {
    let server = FakeApiServer::start().await;
    server.apply(pod("a", "p1", "web", "n1"));
    let q = Duration::from_millis(300);
    let not_found = raw(&server, "/apis/apps/v1/deployments", q, || {}).await;
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    assert!(
        not_found.contains(r#""kind":"Status""#) && not_found.contains(r#""reason":"NotFound""#)
    );
    let version = raw(&server, "/version", q, || {}).await;
    assert!(
        version.starts_with("HTTP/1.1 200") && version.contains(r#""gitVersion""#),
        "{version}"
    );
    let list = raw(&server, "/api/v1/namespaces/a/pods", q, || {}).await;
    assert!(
        list.contains(r#""kind":"PodList""#) && list.contains(r#""resourceVersion":"2""#),
        "{list}"
    );
    let discovery = raw(&server, "/apis/networking.k8s.io/v1", q, || {}).await;
    assert!(
        discovery.contains(r#""name":"networkpolicies""#),
        "{discovery}"
    );

    // A watch is chunked, one JSON event per line; a timeout ends it with the last chunk.
    let rv = server.resource_version();
    let s2 = server.clone();
    let clean = raw(
        &server,
        &format!("/api/v1/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        q,
        move || {
            s2.apply(pod("a", "p2", "web", "n1"));
        },
    )
    .await;
    assert!(
        clean
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{clean}"
    );
    assert!(clean.contains(r#"{"type":"ADDED","object":{"#), "{clean}");
    assert!(clean.ends_with("\r\n0\r\n\r\n"), "{clean:?}");
    // Dropped: no terminating chunk.
    let s3 = server.clone();
    let dropped = raw(
        &server,
        "/api/v1/pods?watch=true&resourceVersion=0",
        q,
        move || s3.drop_connections(),
    )
    .await;
    assert!(dropped.contains(r#""name":"p2""#), "{dropped}");
    assert!(!dropped.ends_with("0\r\n\r\n"), "{dropped:?}");
    // A streaming list ends its initial events with the annotated bookmark.
    let streamed = raw(
        &server,
        "/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        Duration::from_secs(3),
        || {},
    )
    .await;
    assert!(streamed.contains(r#""type":"BOOKMARK""#), "{streamed}");
    assert!(
        streamed.contains(r#""k8s.io/initial-events-end":"true""#),
        "{streamed}"
    );
}

#[tokio::test]
async fn kubeconfig_points_at_the_server() {
    let server = FakeApiServer::start().await;
    server.apply(namespace("a"));
    let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", server.url()));
    let client = kube::Client::try_from(config).unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, vec!["a"]);
}

#[tokio::test]
async fn binary_serves_files() {
    let dir = std::env::temp_dir().join(format!("fake-apiserver-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("objs.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: a}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let jsonl = dir.join("objs.json");
    let lines: Vec<String> = (0..3)
        .map(|i| pod("a", &format!("p{i}"), "web", "n1").to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let kc = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kc);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .arg(&yaml)
        .arg(&jsonl)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let text = bounded("the kubeconfig", async {
        loop {
            if let Ok(t) = std::fs::read_to_string(&kc) {
                if t.contains("current-context") {
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let kcfg = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kcfg, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods = Api::<Pod>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 3);
    let pols = Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::all(client);
    assert_eq!(pols.list(&Default::default()).await.unwrap().items.len(), 1);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `set_served`: a group version unserved is gone from discovery and answers 404 (a CRD
/// not installed); the group goes with its last version; served again, it is back.
#[tokio::test]
async fn group_versions_can_be_unserved() {
    const GROUP: &str = "policy.networking.k8s.io";
    let server = FakeApiServer::start().await;
    let client = server.client();
    let versions = |d: &kube::discovery::Discovery| -> Vec<String> {
        d.get(GROUP)
            .map(|g| g.versions().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let discover = || {
        kube::discovery::Discovery::new(client.clone())
            .filter(&[GROUP])
            .run()
    };
    assert_eq!(
        versions(&discover().await.unwrap()),
        ["v1beta1", "v1alpha2"]
    );
    server.set_served("policy.networking.k8s.io/v1beta1", false);
    assert_eq!(versions(&discover().await.unwrap()), ["v1alpha2"]);
    let beta = raw(
        &server,
        "/apis/policy.networking.k8s.io/v1beta1/clusternetworkpolicies",
        Duration::from_secs(1),
        || {},
    )
    .await;
    assert!(beta.starts_with("HTTP/1.1 404"), "{beta}");
    server.set_served("policy.networking.k8s.io/v1alpha2", false);
    assert!(discover().await.unwrap().get(GROUP).is_none());
    let group = raw(
        &server,
        "/apis/policy.networking.k8s.io",
        Duration::from_secs(1),
        || {},
    )
    .await;
    assert!(group.starts_with("HTTP/1.1 404"), "{group}");
    server.set_served("policy.networking.k8s.io/v1beta1", true);
    server.set_served("policy.networking.k8s.io/v1alpha2", true);
    assert_eq!(
        versions(&discover().await.unwrap()),
        ["v1beta1", "v1alpha2"]
    );
}
