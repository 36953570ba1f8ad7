//! ClusterNetworkPolicy `domainNames` semantics, with no I/O: which names a pattern covers
//! ([`pattern`]), and what one DNS answer teaches ([`answer`]): for a response the pod
//! received, the name it asked for and the A and AAAA addresses that answer it, through
//! CNAME chains inside that one answer, each with the lifetime its records allow.
//!
//! ```text
//! DNS response (bytes) --hickory-proto--> Message --answer::read--> Resolved { name, addrs }
//! rule's domainNames --pattern::DomainPattern::parse--> patterns --matches(name)--> learn?
//! ```
//!
//! What the name matching follows is NPEP-133 and the API's `DomainName` type
//! (`policy.networking.k8s.io`): an exact name matches itself only; `*.example.com`
//! matches one or more whole labels in front of `example.com`, never `example.com`
//! itself; case does not matter (DNS names compare case-insensitively); a trailing dot
//! changes nothing. The name matched is the one the pod asked for (the question), not a
//! CNAME target: an answer for `evil.example` that aliases an allowed name admits nothing,
//! and an answer whose records are for another name than the question admits nothing.
//!
//! Parsing is hickory-proto's; this module only reads the parsed message. Knows nothing
//! of pods, rules or nftables: the caller (the controller's DNS proxy) keeps the rules'
//! patterns and the sets the addresses go to.

pub mod answer;
pub mod facts;
pub mod pattern;

pub use answer::{read, AnswerError, Learned, Limits, Resolved, Ttl};
pub use pattern::{DomainPattern, PatternError};
