use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

type Sent = Arc<Mutex<Vec<Vec<LearnedElem>>>>;

struct Fake(Sent, bool);

impl LearnSink for Fake {
    fn add(&mut self, elems: &[LearnedElem]) -> Result<(), LearnError> {
        if self.1 {
            return Err(LearnError::Gone);
        }
        self.0.lock().unwrap().push(elems.to_vec());
        Ok(())
    }
}

fn rule(id: &str, patterns: &[&str]) -> DomainRule {
    DomainRule {
        id: id.into(),
        patterns: patterns
            .iter()
            .map(|p| DomainPattern::parse(p).unwrap())
            .collect(),
        set4: format!("{id}/4"),
        set6: format!("{id}/6"),
    }
}

fn lookup(server: &str, q: &str, ttl: u32) -> Lookup {
    let mut m = Message::response(1, OpCode::Query);
    let n = Name::from_ascii(q).unwrap();
    m.add_query(Query::query(n.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(
        n.clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
    ));
    m.add_answer(Record::from_rdata(
        n,
        ttl,
        RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
    ));
    Lookup {
        client: "10.0.0.2:5000".parse().unwrap(),
        server: SocketAddr::new(server.parse().unwrap(), 53),
        answer: m,
    }
}

fn learner(fail: bool) -> (SetLearner, Sent) {
    let sent: Sent = Arc::default();
    let l = SetLearner::new(
        vec!["10.96.0.10/32".parse().unwrap()],
        Ttl { min: 5, max: 600 },
        Box::new(Fake(sent.clone(), fail)),
    );
    l.set_rules(vec![
        rule("a", &["*.example.com"]),
        rule("b", &["api.example.com", "other.example"]),
    ]);
    (l, sent)
}

fn sets(batch: &[LearnedElem]) -> Vec<(String, String, u64)> {
    batch
        .iter()
        .map(|e| (e.set.clone(), e.addr.to_string(), e.timeout.as_secs()))
        .collect()
}

#[tokio::test]
async fn each_matching_rule_gets_its_own_sets_and_no_other() {
    let (l, sent) = learner(false);
    assert_eq!(
        l.learn(lookup("10.96.0.10", "www.example.com.", 60))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        sets(&sent.lock().unwrap()[0]),
        [
            ("a/4".into(), "192.0.2.1".into(), 60),
            ("a/6".into(), "2001:db8::1".into(), 60)
        ]
    );
    // Both rules cover api.example.com.
    assert_eq!(
        l.learn(lookup("10.96.0.10", "API.example.com", 1))
            .await
            .unwrap(),
        2
    );
    let batch = sets(&sent.lock().unwrap()[1]);
    assert_eq!(
        batch,
        [
            ("b/4".into(), "192.0.2.1".into(), 5),
            ("b/6".into(), "2001:db8::1".into(), 5)
        ],
        "rule a already holds these for longer"
    );
    // A name no rule covers teaches nothing and sends nothing.
    assert_eq!(
        l.learn(lookup("10.96.0.10", "example.com.", 60))
            .await
            .unwrap(),
        0
    );
    assert_eq!(sent.lock().unwrap().len(), 2);
    let held = l.learned();
    assert_eq!(held.len(), 4);
    assert_eq!(held[0].1.domain, "www.example.com.");
    assert_eq!(held[2].1.domain, "api.example.com.");
}

#[tokio::test]
async fn untrusted_servers_teach_nothing() {
    let (l, sent) = learner(false);
    assert_eq!(
        l.learn(lookup("203.0.113.5", "www.example.com.", 60))
            .await
            .unwrap(),
        0
    );
    assert!(sent.lock().unwrap().is_empty());
    assert!(l.learned().is_empty());
}

#[tokio::test]
async fn a_kernel_refusal_is_an_error_and_nothing_is_remembered() {
    let (l, _) = learner(true);
    assert!(l
        .learn(lookup("10.96.0.10", "www.example.com.", 60))
        .await
        .is_err());
    assert!(l.learned().is_empty());
}
