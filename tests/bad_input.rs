//! Bad input: every refusal names the file, the object, the field path and the problem;
//! an invalid policy applied to a live index fails closed.

mod common;

use common::*;
use nftpol::error::Error;
use nftpol::index::Index;
use nftpol::input::parse_str;
use serde_json::json;

const FILE: &str = "bad.yaml";

/// A NetworkPolicy x/p with `spec` (a YAML flow mapping), as one file's text.
fn policy_text(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec: {spec}\n"
    )
}

/// Reads `text` as file `bad.yaml` and indexes it; the error of whichever stage refuses.
fn load_error(text: &str) -> Error {
    match parse_str(text, FILE).and_then(Index::from_objects) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error is about NetworkPolicy x/p in bad.yaml at exactly `field`, and that
/// its message mentions every word of `problem`.
fn assert_invalid(spec: &str, field: &str, problem: &[&str]) {
    let err = load_error(&policy_text(spec));
    let text = err.to_string();
    match &err {
        Error::Invalid {
            source_name,
            object,
            field: f,
            problem: p,
        } => {
            assert_eq!(source_name, FILE, "{text}");
            assert_eq!(object.to_string(), "NetworkPolicy x/p", "{text}");
            assert_eq!(f, field, "{text}");
            assert!(!p.is_empty(), "{text}");
            for word in problem {
                assert!(p.contains(word), "problem should mention {word:?}: {text}");
            }
        }
        other => panic!("expected an Invalid error, got {other:?}"),
    }
    // The one-line message carries all four.
    assert!(
        text.starts_with(&format!("{FILE}: NetworkPolicy x/p: {field}: ")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// ipBlock
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_cidr() {
    for cidr in [
        "10.0.0.0/33",
        "banana",
        "10.0.0.0",
        "300.0.0.0/8",
        "fd00::/129",
    ] {
        assert_invalid(
            &format!(
                "{{podSelector: {{}}, ingress: [{{from: [{{ipBlock: {{cidr: \"{cidr}\"}}}}]}}]}}"
            ),
            "spec.ingress[0].from[0].ipBlock.cidr",
            &[cidr],
        );
    }
}

#[test]
fn invalid_except_cidr() {
    assert_invalid(
        "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/99]}}]}]}",
        "spec.egress[0].to[0].ipBlock.except[1]",
        &["10.2.0.0/99"],
    );
}

#[test]
fn except_outside_its_cidr() {
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]}",
        "spec.ingress[0].from[1].ipBlock.except[0]",
        &["10.1.0.0/24"],
    );
}

#[test]
fn except_wider_than_or_equal_to_its_cidr() {
    // The API server requires a strict subset.
    for except in ["10.0.0.0/8", "10.0.0.0/16"] {
        assert_invalid(
            &format!("{{podSelector: {{}}, ingress: [{{from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [\"{except}\"]}}}}]}}]}}"),
            "spec.ingress[0].from[0].ipBlock.except[0]",
            &[except],
        );
    }
}

#[test]
fn except_of_the_other_family() {
    assert_invalid(
        "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, \"fd00::/64\"]}}]}]}",
        "spec.egress[0].to[0].ipBlock.except[1]",
        &["fd00::/64"],
    );
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: \"fd00::/8\", except: [10.0.0.0/8]}}]}]}",
        "spec.ingress[0].from[0].ipBlock.except[0]",
        &["10.0.0.0/8"],
    );
}

#[test]
fn ip_block_combined_with_a_selector_in_one_peer() {
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
        "spec.ingress[0].from[0]",
        &["ipBlock"],
    );
    assert_invalid(
        "{podSelector: {}, egress: [{to: [{podSelector: {}}, {namespaceSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}]}]}",
        "spec.egress[0].to[2]",
        &["ipBlock"],
    );
}

#[test]
fn empty_peer() {
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{}]}]}",
        "spec.ingress[0].from[0]",
        &[],
    );
    assert_invalid(
        "{podSelector: {}, egress: [{}, {to: [{podSelector: {}}, {}]}]}",
        "spec.egress[1].to[1]",
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

#[test]
fn end_port_below_port() {
    assert_invalid(
        "{podSelector: {}, ingress: [{ports: [{port: 80}, {port: 90, endPort: 89}]}]}",
        "spec.ingress[0].ports[1].endPort",
        &["89", "90"],
    );
}

#[test]
fn end_port_with_a_named_port() {
    assert_invalid(
        "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}",
        "spec.ingress[0].ports[0].endPort",
        &["http"],
    );
}

#[test]
fn end_port_without_port() {
    assert_invalid(
        "{podSelector: {}, egress: [{ports: [{protocol: UDP, endPort: 90}]}]}",
        "spec.egress[0].ports[0].endPort",
        &[],
    );
}

#[test]
fn unknown_protocol() {
    assert_invalid(
        "{podSelector: {}, egress: [{ports: [{protocol: ICMP}]}]}",
        "spec.egress[0].ports[0].protocol",
        &["ICMP"],
    );
    // Protocol names are case sensitive in the API.
    assert_invalid(
        "{podSelector: {}, ingress: [{}, {ports: [{port: 80}, {protocol: tcp, port: 81}]}]}",
        "spec.ingress[1].ports[1].protocol",
        &["tcp"],
    );
}

#[test]
fn port_number_out_of_range() {
    for (port, word) in [
        ("0", "0"),
        ("70000", "70000"),
        ("65536", "65536"),
        ("-1", "-1"),
    ] {
        assert_invalid(
            &format!("{{podSelector: {{}}, ingress: [{{ports: [{{port: {port}}}]}}]}}"),
            "spec.ingress[0].ports[0].port",
            &[word],
        );
    }
    assert_invalid(
        "{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 70000}]}]}",
        "spec.ingress[0].ports[0].endPort",
        &["70000"],
    );
}

#[test]
fn invalid_port_name() {
    for name in ["Http", "a_b", "-web", "a-very-long-port-name"] {
        assert_invalid(
            &format!("{{podSelector: {{}}, ingress: [{{ports: [{{port: \"{name}\"}}]}}]}}"),
            "spec.ingress[0].ports[0].port",
            &[name],
        );
    }
}

// ---------------------------------------------------------------------------------------
// Selectors and policyTypes
// ---------------------------------------------------------------------------------------

#[test]
fn bad_selector_operator() {
    assert_invalid(
        "{podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}",
        "spec.podSelector.matchExpressions[0].operator",
        &["Equals"],
    );
    assert_invalid(
        "{podSelector: {}, ingress: [{}, {from: [{namespaceSelector: {matchExpressions: [{key: a, operator: Exists}, {key: b, operator: in, values: [c]}]}}]}]}",
        "spec.ingress[1].from[0].namespaceSelector.matchExpressions[1].operator",
        &["in"],
    );
}

#[test]
fn in_and_not_in_need_values() {
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: In}]}}]}]}",
        "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
        &["In"],
    );
    assert_invalid(
        "{podSelector: {matchExpressions: [{key: a, operator: NotIn, values: []}]}}",
        "spec.podSelector.matchExpressions[0].values",
        &["NotIn"],
    );
}

#[test]
fn exists_and_does_not_exist_take_no_values() {
    assert_invalid(
        "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}",
        "spec.podSelector.matchExpressions[0].values",
        &["Exists"],
    );
    assert_invalid(
        "{podSelector: {}, egress: [{to: [{namespaceSelector: {matchExpressions: [{key: a, operator: DoesNotExist, values: [b]}]}}]}]}",
        "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values",
        &["DoesNotExist"],
    );
}

#[test]
fn invalid_label_keys_in_selectors() {
    // Keys as the API server validates them: an optional DNS subdomain prefix and '/',
    // then a name of at most 63 alphanumerics with '-', '_', '.' inside.
    for (key, words) in [
        ("bad key!", &["bad key!", "name part"][..]),
        ("-a", &["-a", "name part"]),
        ("a/b/c", &["a/b/c", "'/'"]),
        ("/a", &["prefix"]),
        ("Example.com/a", &["Example.com", "DNS subdomain"]),
    ] {
        assert_invalid(
            &format!("{{podSelector: {{matchLabels: {{\"{key}\": v}}}}}}"),
            "spec.podSelector.matchLabels",
            words,
        );
        assert_invalid(
            &format!("{{podSelector: {{}}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: \"{key}\", operator: Exists}}]}}}}]}}]}}"),
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key",
            words,
        );
    }
    let long = "k".repeat(64);
    assert_invalid(
        &format!("{{podSelector: {{}}, egress: [{{to: [{{podSelector: {{matchLabels: {{{long}: v}}}}}}]}}]}}"),
        "spec.egress[0].to[0].podSelector.matchLabels",
        &["64 characters", "63"],
    );
    assert_invalid(
        "{podSelector: {matchExpressions: [{key: \"\", operator: Exists}]}}",
        "spec.podSelector.matchExpressions[0].key",
        &["empty"],
    );
}

#[test]
fn invalid_label_values_in_selectors() {
    assert_invalid(
        "{podSelector: {matchLabels: {app: \"web server\"}}}",
        "spec.podSelector.matchLabels",
        &["app", "web server"],
    );
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [web, \"-db\"]}]}}]}]}",
        "spec.ingress[0].from[0].podSelector.matchExpressions[0].values[1]",
        &["-db"],
    );
    let long = "v".repeat(64);
    assert_invalid(
        &format!("{{podSelector: {{matchExpressions: [{{key: app, operator: NotIn, values: [{long}]}}]}}}}"),
        "spec.podSelector.matchExpressions[0].values[0]",
        &["64 characters"],
    );
}

#[test]
fn valid_label_keys_and_values_in_selectors_are_accepted() {
    let long_name = "k".repeat(63);
    for sel in [
        "{matchLabels: {app.kubernetes.io/name: My.App_1-x}}".to_string(),
        "{matchLabels: {kubernetes.io/metadata.name: x, empty: \"\"}}".to_string(),
        format!("{{matchLabels: {{{long_name}: v}}}}"),
        "{matchExpressions: [{key: example.com/tier, operator: In, values: [\"\", A1]}]}"
            .to_string(),
    ] {
        let text = policy_text(&format!("{{podSelector: {sel}}}"));
        parse_str(&text, FILE)
            .and_then(Index::from_objects)
            .unwrap_or_else(|e| panic!("{sel}: {e}"));
    }
}

#[test]
fn invalid_labels_on_pods_and_namespaces() {
    for (obj, name) in [
        (pod("x", "a").label("bad key!", "v"), "Pod x/a"),
        (pod("x", "a").label("app", "a b"), "Pod x/a"),
        (ns("x").label("-team", "y"), "Namespace x"),
        (
            netpol("x", "p").set(&["metadata", "labels"], "a/b/c", "v"),
            "NetworkPolicy x/p",
        ),
    ] {
        match load_error(&yaml_docs(&[obj])) {
            Error::Invalid {
                object,
                field,
                problem,
                source_name,
            } => {
                assert_eq!(object.to_string(), name);
                assert_eq!(source_name, FILE);
                assert_eq!(field, "metadata.labels");
                assert!(problem.contains("label"), "{problem}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn unknown_policy_type() {
    assert_invalid(
        "{podSelector: {}, policyTypes: [Ingress, Egres]}",
        "spec.policyTypes[1]",
        &["Egres"],
    );
}

#[test]
fn wrongly_typed_field() {
    assert_invalid(
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: [10.0.0.0/8]}}]}]}",
        "spec.ingress[0].from[0].ipBlock.cidr",
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// Files and documents
// ---------------------------------------------------------------------------------------

#[test]
fn missing_namespace_on_a_network_policy() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n";
    let err = load_error(text);
    match &err {
        Error::Invalid {
            source_name,
            object,
            field,
            ..
        } => {
            assert_eq!(source_name, FILE);
            assert_eq!(object.to_string(), "NetworkPolicy p");
            assert_eq!(field, "metadata.namespace");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("bad.yaml: NetworkPolicy p: metadata.namespace: "));
}

#[test]
fn missing_name() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\n";
    let err = load_error(text);
    match &err {
        Error::Invalid { field, .. } => assert_eq!(field, "metadata.name"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(err.to_string().starts_with("bad.yaml: "), "{err}");
}

#[test]
fn duplicate_objects_in_one_input() {
    let text = format!(
        "{}---\n{}",
        policy_text("{podSelector: {}}"),
        policy_text("{podSelector: {matchLabels: {a: b}}}")
    );
    let err = load_error(&text);
    match &err {
        Error::Duplicate {
            object,
            first,
            second,
        } => {
            assert_eq!(object.to_string(), "NetworkPolicy x/p");
            assert_eq!(first, FILE);
            assert_eq!(second, FILE);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("NetworkPolicy x/p") && msg.contains(FILE),
        "{msg}"
    );
}

#[test]
fn duplicate_objects_across_files_name_both() {
    let mut objs = parse_str(&yaml_docs(&[pod("x", "a")]), "one.yaml").unwrap();
    objs.extend(parse_str(&yaml_docs(&[ns("x"), pod("x", "a")]), "two.yaml").unwrap());
    let err = Index::from_objects(objs).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Duplicate { .. }), "{msg}");
    assert!(msg.contains("Pod x/a"), "{msg}");
    assert!(
        msg.contains("one.yaml") && msg.contains("two.yaml"),
        "{msg}"
    );
}

#[test]
fn same_name_in_another_namespace_or_kind_is_no_duplicate() {
    let text = yaml_docs(&[
        ns("p"),
        ns("x"),
        pod("x", "p"),
        pod("y", "p"),
        netpol("x", "p"),
        netpol("y", "p"),
    ]);
    let objs = parse_str(&text, FILE).unwrap();
    assert_eq!(objs.len(), 6);
    Index::from_objects(objs).unwrap();
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x: y\n";
    let err = load_error(text);
    match &err {
        Error::Syntax {
            source_name,
            line,
            column,
            ..
        } => {
            assert_eq!(source_name, FILE);
            // The second ':' on line 4, 1-based.
            assert_eq!((*line, *column), (4, 10), "{err}");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    assert!(err.to_string().starts_with("bad.yaml:4:10: "), "{err}");
}

#[test]
fn yaml_syntax_error_in_a_later_document_has_its_line() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  labels: [a\n",
        policy_text("{podSelector: {}}")
    );
    match load_error(&text) {
        Error::Syntax { line, column, .. } => {
            // The unclosed '[' is on line 9, column 11.
            assert_eq!((line, column), (9, 11));
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
}

#[test]
fn json_syntax_error_has_line_and_column() {
    let text = "{\"apiVersion\": \"v1\",\n \"kind\": }\n";
    let err = match parse_str(text, "bad.json") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    match &err {
        Error::Syntax {
            source_name,
            line,
            column,
            ..
        } => {
            assert_eq!(source_name, "bad.json");
            assert_eq!((*line, *column), (2, 10), "{err}");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
}

#[test]
fn non_mapping_document() {
    let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n- a\n- b\n";
    let err = load_error(text);
    match &err {
        Error::Document {
            source_name,
            document,
            ..
        } => {
            assert_eq!(source_name, FILE);
            assert_eq!(*document, 2);
        }
        other => panic!("expected Document, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with("bad.yaml: document 2: "),
        "{err}"
    );
    assert!(matches!(
        load_error("just a string\n"),
        Error::Document { document: 1, .. }
    ));
}

#[test]
fn list_without_items() {
    assert!(matches!(
        load_error("apiVersion: v1\nkind: List\n"),
        Error::Document { document: 1, .. }
    ));
}

#[test]
fn invalid_pod_address() {
    let text = yaml_docs(&[pod("x", "a").ip("10.244.1.300")]);
    match load_error(&text) {
        Error::Invalid {
            object,
            field,
            problem,
            ..
        } => {
            assert_eq!(object.to_string(), "Pod x/a");
            assert_eq!(field, "status.podIPs[0].ip");
            assert!(problem.contains("10.244.1.300"), "{problem}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Fail closed
// ---------------------------------------------------------------------------------------

fn bad_policy() -> Obj {
    netpol("x", "p")
        .selecting("pod", "a")
        .ingress(json!([{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]))
}

#[test]
fn invalid_policy_applied_to_an_index_fails_closed() {
    let mut idx = index(cluster());
    let err = idx.apply(bad_policy().object()).unwrap_err();
    match &err {
        Error::Invalid { object, field, .. } => {
            assert_eq!(object.to_string(), "NetworkPolicy x/p");
            assert_eq!(field, "spec.ingress[0].from[0].ipBlock.cidr");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let g = graph(&idx);
    let a = g.pod("x", "a").unwrap();
    let iso = a.ingress.as_ref().expect("x/a stays isolated");
    assert_eq!(iso.isolated_by, ["x/p"]);
    assert!(iso.allows.is_empty());
    assert!(a.egress.is_none(), "the policy names no egress");
    assert!(g.pod("x", "b").unwrap().ingress.is_none());
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", false),
            ("10.0.0.1", "x/a", "tcp/80", false),
            ("x/a", "x/b", "tcp/80", true),
        ],
    );
    let errors = idx.policy_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0.to_string(), "NetworkPolicy x/p");
    assert!(
        errors[0].1.contains("spec.ingress[0].from[0].ipBlock.cidr"),
        "{}",
        errors[0].1
    );
}

#[test]
fn invalid_policy_replacing_a_valid_one_takes_its_allows_away() {
    let mut idx = cluster_with(vec![netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])
        .ingress(json!([{}]))
        .egress(json!([{}]))]);
    assert!(allowed(&idx, "x/b", "x/a", "tcp/80"));
    assert!(allowed(&idx, "x/a", "x/b", "tcp/80"));
    let bad = netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Egress"])
        .ingress(json!([{}]))
        .egress(json!([{"ports": [{"protocol": "ICMP"}]}]));
    assert!(idx.apply(bad.object()).is_err());
    assert_verdicts(
        &idx,
        &[
            ("x/b", "x/a", "tcp/80", false),
            ("x/a", "x/b", "tcp/80", false),
        ],
    );
    // Fixing it restores the allows and clears the error.
    assert!(idx
        .apply(
            netpol("x", "p")
                .selecting("pod", "a")
                .policy_types(&["Ingress", "Egress"])
                .ingress(json!([{}]))
                .egress(json!([{}]))
                .object()
        )
        .unwrap());
    assert!(idx.policy_errors().is_empty());
    assert!(allowed(&idx, "x/a", "x/b", "tcp/80"));
}

#[test]
fn invalid_egress_rules_without_policy_types_isolate_both_directions() {
    let mut idx = index(cluster());
    let bad = netpol("x", "p")
        .selecting("pod", "a")
        .egress(json!([{"to": [{}]}]));
    assert!(idx.apply(bad.object()).is_err());
    let g = graph(&idx);
    let a = g.pod("x", "a").unwrap();
    assert_eq!(a.ingress.as_ref().unwrap().allows, []);
    assert_eq!(a.egress.as_ref().unwrap().allows, []);
}

#[test]
fn invalid_policy_types_fail_closed_in_both_directions() {
    let mut idx = index(cluster());
    let bad = netpol("x", "p")
        .selecting("pod", "a")
        .policy_types(&["Ingress", "Sideways"])
        .ingress(json!([{}]));
    assert!(idx.apply(bad.object()).is_err());
    let a = graph(&idx).pod("x", "a").cloned().unwrap();
    assert_eq!(a.ingress.unwrap().allows, []);
    assert_eq!(a.egress.unwrap().allows, []);
}

#[test]
fn invalid_pod_selector_isolates_at_least_every_pod_it_might_select() {
    let mut idx = index(cluster());
    let bad = netpol("x", "p").pod_selector(
        json!({"matchExpressions": [{"key": "pod", "operator": "Equals", "values": ["a"]}]}),
    );
    assert!(idx.apply(bad.object()).is_err());
    let g = graph(&idx);
    for name in ["a", "b"] {
        let p = g.pod("x", name).unwrap();
        assert_eq!(p.ingress.as_ref().expect(name).allows, [], "x/{name}");
    }
    // Other namespaces are untouched.
    assert!(g.pod("y", "c").unwrap().ingress.is_none());
    assert!(!allowed(&idx, "y/c", "x/a", "tcp/80"));
}

#[test]
fn from_objects_refuses_an_invalid_policy() {
    let objs = vec![
        pod("x", "a").ip("10.244.1.11").object(),
        bad_policy().object(),
    ];
    let err = Index::from_objects(objs).unwrap_err();
    assert!(err.to_string().contains("NetworkPolicy x/p"), "{err}");
}

#[test]

fn non_mapping_item_of_a_list_names_its_document() {
    let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: List\nitems:\n- 42\n";
    let err = load_error(text);
    match &err {
        Error::Document {
            source_name,
            document,
            ..
        } => {
            assert_eq!(source_name, FILE);
            assert_eq!(*document, 2, "{err}");
        }
        other => panic!("expected Document, got {other:?}"),
    }
}

#[test]
fn invalid_item_of_a_list_names_the_object_and_field() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p, namespace: x}\n  spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n";
    match load_error(text) {
        Error::Invalid {
            source_name,
            object,
            field,
            ..
        } => {
            assert_eq!(source_name, FILE);
            assert_eq!(object.to_string(), "NetworkPolicy x/p");
            assert_eq!(field, "spec.ingress[0].ports[0].port");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn port_number_written_as_a_string() {
    // The API server refuses "80": a port name must contain a letter.
    assert_invalid(
        "{podSelector: {}, ingress: [{ports: [{port: \"80\"}]}]}",
        "spec.ingress[0].ports[0].port",
        &["\"80\"", "without quotes"],
    );
}

#[test]
fn boolean_looking_name() {
    let err = load_error("apiVersion: v1\nkind: Namespace\nmetadata: {name: true}\n").to_string();
    assert!(
        err.contains("metadata.name") && err.contains("must be a string"),
        "{err}"
    );
}

#[test]
fn yaml_1_1_booleans_stay_strings() {
    // `ns: y` is the label value "y" (YAML 1.2), not a boolean.
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: y, on: yes}}\n";
    let objs = nftpol::input::parse_str(text, "t.yaml").unwrap();
    let index = nftpol::index::Index::from_objects(objs).unwrap();
    let labels = index.namespace_labels("x").unwrap();
    assert_eq!(labels.get("ns").map(String::as_str), Some("y"));
    assert_eq!(labels.get("on").map(String::as_str), Some("yes"));
}
