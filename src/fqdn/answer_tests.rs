//! Answers built with hickory-proto and sent through the wire format, as the proxy gets
//! them; hostile ones included.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::*;
use crate::fqdn::DomainPattern;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(n: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(n), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn aaaa(n: &str, ttl: u32, ip: &str) -> Record {
    Record::from_rdata(
        name(n),
        ttl,
        RData::AAAA(AAAA(ip.parse::<Ipv6Addr>().unwrap())),
    )
}

fn cname(n: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(name(n), ttl, RData::CNAME(CNAME(name(target))))
}

/// A NOERROR response to one IN question, through bytes and back.
fn response(q: &str, qtype: RecordType, answers: Vec<Record>) -> Message {
    let mut m = Message::response(7, OpCode::Query);
    m.add_query(Query::query(name(q), qtype));
    m.add_answers(answers);
    Message::from_vec(&m.to_vec().unwrap()).unwrap()
}

/// No floor, no ceiling: the TTLs as the answer gives them.
const RAW: Ttl = Ttl {
    min: 0,
    max: u32::MAX,
};

fn learned(m: &Message) -> Vec<(String, u32)> {
    read(m, Limits::default(), RAW)
        .unwrap()
        .addrs
        .iter()
        .map(|l| (l.addr.to_string(), l.ttl))
        .collect()
}

#[test]
fn a_and_aaaa_of_the_question() {
    let m = response(
        "Example.COM.",
        RecordType::A,
        vec![
            a("example.com.", 300, [192, 0, 2, 1]),
            aaaa("EXAMPLE.com.", 60, "2001:db8::1"),
        ],
    );
    let r = read(&m, Limits::default(), RAW).unwrap();
    assert_eq!(r.name, name("example.com."));
    assert_eq!(r.name.to_string(), "example.com.");
    assert_eq!(
        learned(&m),
        [("192.0.2.1".into(), 300), ("2001:db8::1".into(), 60)]
    );
}

#[test]
fn cname_chain_inside_the_answer_with_the_smallest_ttl_on_the_way() {
    let m = response(
        "www.kubernetes.io.",
        RecordType::A,
        vec![
            // Out of order on purpose: the walk follows names, not positions.
            a("edge.cdn.example.", 600, [198, 51, 100, 7]),
            cname("cdn.example.", 30, "edge.cdn.example."),
            cname("www.kubernetes.io.", 3600, "cdn.example."),
        ],
    );
    assert_eq!(learned(&m), [("198.51.100.7".into(), 30)]);
}

#[test]
fn records_of_another_name_teach_nothing() {
    let m = response(
        "allowed.example.",
        RecordType::A,
        vec![a("other.example.", 300, [203, 0, 113, 9])],
    );
    assert_eq!(learned(&m), []);
    // Glue in the other sections is no answer either.
    let mut m = response("allowed.example.", RecordType::A, vec![]);
    m.additionals
        .push(a("allowed.example.", 300, [203, 0, 113, 9]));
    m.authorities
        .push(a("allowed.example.", 300, [203, 0, 113, 10]));
    assert_eq!(learned(&m), []);
}

/// The name matched is the question: a name outside the policy that aliases one inside
/// it still gives the addresses to the question's name, which the pattern refuses.
#[test]
fn an_alias_to_an_allowed_name_is_not_the_allowed_name() {
    let m = response(
        "evil.example.",
        RecordType::A,
        vec![
            cname("evil.example.", 300, "allowed.example."),
            a("allowed.example.", 300, [192, 0, 2, 66]),
        ],
    );
    let r = read(&m, Limits::default(), RAW).unwrap();
    assert_eq!(r.addrs.len(), 1);
    let p = DomainPattern::parse("allowed.example").unwrap();
    assert!(!p.matches(&r.name));
    assert!(DomainPattern::parse("evil.example")
        .unwrap()
        .matches(&r.name));
}

#[test]
fn cname_loops_end() {
    let looped = response(
        "a.example.",
        RecordType::A,
        vec![
            cname("a.example.", 300, "b.example."),
            cname("b.example.", 300, "A.example."),
        ],
    );
    assert_eq!(learned(&looped), []);
    let self_loop = response(
        "a.example.",
        RecordType::A,
        vec![
            cname("a.example.", 300, "a.example."),
            a("c.example.", 1, [192, 0, 2, 3]),
        ],
    );
    assert_eq!(learned(&self_loop), []);
    // Addresses met before the loop closes are still the question's.
    let m = response(
        "a.example.",
        RecordType::A,
        vec![
            cname("a.example.", 300, "b.example."),
            a("b.example.", 300, [192, 0, 2, 2]),
            cname("b.example.", 300, "a.example."),
        ],
    );
    assert_eq!(learned(&m), [("192.0.2.2".into(), 300)]);
}

#[test]
fn long_chains_stop_at_the_limit() {
    let chain = |hops: usize| {
        let mut recs: Vec<Record> = (0..hops)
            .map(|i| {
                cname(
                    &format!("n{i}.example."),
                    300,
                    &format!("n{}.example.", i + 1),
                )
            })
            .collect();
        recs.push(a(&format!("n{hops}.example."), 300, [192, 0, 2, 1]));
        response("n0.example.", RecordType::A, recs)
    };
    let limits = Limits {
        max_chain: 3,
        max_addresses: 10,
    };
    assert_eq!(read(&chain(3), limits, RAW).unwrap().addrs.len(), 1);
    assert_eq!(read(&chain(4), limits, RAW).unwrap().addrs.len(), 0);
}

#[test]
fn two_aliases_for_one_name_are_not_guessed_between() {
    let m = response(
        "a.example.",
        RecordType::A,
        vec![
            a("a.example.", 300, [192, 0, 2, 1]),
            cname("a.example.", 300, "b.example."),
            cname("a.example.", 300, "c.example."),
            a("b.example.", 300, [192, 0, 2, 2]),
            a("c.example.", 300, [192, 0, 2, 3]),
        ],
    );
    assert_eq!(learned(&m), [("192.0.2.1".into(), 300)]);
}

#[test]
fn huge_answers_are_bounded() {
    let recs: Vec<Record> = (0..3000u32)
        .map(|i| a("big.example.", 300, (0xc000_0000u32 + i).to_be_bytes()))
        .collect();
    let m = response("big.example.", RecordType::A, recs);
    // As many as a 64 KiB message holds (hickory's encoder stops there).
    assert!(m.answers.len() > 2000, "{}", m.answers.len());
    let r = read(&m, Limits::default(), RAW).unwrap();
    assert_eq!(r.addrs.len(), Limits::default().max_addresses);
    // The first ones, in answer order.
    assert_eq!(r.addrs[0].addr.to_string(), "192.0.0.0");
}

#[test]
fn ttl_floor_ceiling_and_duplicates() {
    let m = response(
        "a.example.",
        RecordType::A,
        vec![
            a("a.example.", 1, [192, 0, 2, 1]),
            a("a.example.", u32::MAX >> 1, [192, 0, 2, 2]),
            a("a.example.", 5, [192, 0, 2, 3]),
            a("a.example.", 50, [192, 0, 2, 3]),
        ],
    );
    let r = read(&m, Limits::default(), Ttl { min: 10, max: 3600 }).unwrap();
    let got: Vec<u32> = r.addrs.iter().map(|l| l.ttl).collect();
    assert_eq!(got, [10, 3600, 50]);
    assert_eq!(Ttl::default().clamp(0), Ttl::DEFAULT_MIN);
    // A floor above the ceiling wins: the flag the operator set is the floor.
    assert_eq!(Ttl { min: 100, max: 10 }.clamp(5), 100);
}

#[test]
fn only_plain_successful_answers_teach() {
    let mut m = response(
        "a.example.",
        RecordType::A,
        vec![a("a.example.", 9, [192, 0, 2, 1])],
    );
    m.metadata.response_code = ResponseCode::NXDomain;
    assert_eq!(
        read(&m, Limits::default(), RAW),
        Err(AnswerError::Failed(ResponseCode::NXDomain))
    );
    let mut m = response(
        "a.example.",
        RecordType::A,
        vec![a("a.example.", 9, [192, 0, 2, 1])],
    );
    m.metadata.message_type = MessageType::Query;
    assert_eq!(
        read(&m, Limits::default(), RAW),
        Err(AnswerError::NotAnAnswer)
    );
    let mut m = response("a.example.", RecordType::A, vec![]);
    m.add_query(Query::query(name("b.example."), RecordType::A));
    assert_eq!(
        read(&m, Limits::default(), RAW),
        Err(AnswerError::Questions(2))
    );
    let mut m = Message::response(1, OpCode::Query);
    let mut q = Query::query(name("a.example."), RecordType::A);
    q.query_class = DNSClass::CH;
    m.add_query(q);
    assert_eq!(
        read(&m, Limits::default(), RAW),
        Err(AnswerError::Class(DNSClass::CH))
    );
    // Records of class CH for the question are no addresses.
    let mut rec = a("a.example.", 9, [192, 0, 2, 1]);
    rec.dns_class = DNSClass::CH;
    let m = response("a.example.", RecordType::A, vec![rec]);
    assert_eq!(learned(&m), []);
}
