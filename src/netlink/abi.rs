//! The kernel ABI of the netlink layer: every number nftpol sends to or reads from the
//! kernel, each with one name.
//!
//! Owns: netlink and nfnetlink header values, nf_tables message types, `NFTA_*` attribute
//! numbers (read-back parses them), libnftnl attribute ids (encoding sets them), set and
//! element flags, hooks, families, registers, verdict codes, expression operands, nft's
//! user-data and datatype ids, and the ctnetlink numbers. A value the `libc` or
//! `nftnl-sys` crate defines is taken from there; the others are written out with the
//! header that defines them, because neither crate has them.
//!
//! Must not: hold logic or model knowledge (which hook a `Hook` is lives in `encode.rs`);
//! every other netlink file names kernel numbers only through this module.

// ---- netlink (linux/netlink.h) ------------------------------------------------------

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
pub(crate) const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
pub(crate) const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
pub(crate) const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
pub(crate) const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
pub(crate) const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
pub(crate) const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
pub(crate) const NLM_F_APPEND: u16 = libc::NLM_F_APPEND as u16;
/// On an NLMSG_ERROR: the request is not echoed whole.
pub(crate) const NLM_F_CAPPED: u16 = libc::NLM_F_CAPPED as u16;
/// On an NLMSG_ERROR: extended-ack attributes follow.
pub(crate) const NLM_F_ACK_TLVS: u16 = libc::NLM_F_ACK_TLVS as u16;
pub(crate) const NLA_F_NESTED: u16 = libc::NLA_F_NESTED as u16;
/// An attribute's type without the nested / byte-order flag bits.
pub(crate) const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
// enum nlmsgerr_attrs (linux/netlink.h).
pub(crate) const NLMSGERR_ATTR_MSG: u16 = 1;
pub(crate) const NLMSGERR_ATTR_OFFS: u16 = 2;

// ---- nfnetlink (linux/netfilter/nfnetlink.h) ----------------------------------------

/// `struct nfgenmsg`: family, version, resource id.
pub(crate) const NFGENMSG_LEN: usize = 4;
pub(crate) const NFNETLINK_V0: u8 = libc::NFNETLINK_V0 as u8;
pub(crate) const NFNL_SUBSYS_CTNETLINK: u16 = libc::NFNL_SUBSYS_CTNETLINK as u16;

// ---- families and hooks (linux/netfilter.h) -----------------------------------------

pub(crate) const NFPROTO_INET: u16 = libc::NFPROTO_INET as u16;
/// A ctnetlink dump for every family at once.
pub(crate) const NFPROTO_UNSPEC: u8 = libc::NFPROTO_UNSPEC as u8;
pub(crate) const NFPROTO_IPV4: u8 = libc::NFPROTO_IPV4 as u8;
pub(crate) const NFPROTO_IPV6: u8 = libc::NFPROTO_IPV6 as u8;
pub(crate) const NF_INET_FORWARD: u32 = libc::NF_INET_FORWARD as u32;
pub(crate) const NF_INET_LOCAL_OUT: u32 = libc::NF_INET_LOCAL_OUT as u32;
pub(crate) const NF_INET_LOCAL_IN: u32 = libc::NF_INET_LOCAL_IN as u32;
pub(crate) const NF_INET_PRE_ROUTING: u32 = libc::NF_INET_PRE_ROUTING as u32;

// ---- nf_tables message types (linux/netfilter/nf_tables.h) --------------------------

pub(crate) const NFT_MSG_NEWTABLE: u16 = libc::NFT_MSG_NEWTABLE as u16;
pub(crate) const NFT_MSG_GETTABLE: u16 = libc::NFT_MSG_GETTABLE as u16;
pub(crate) const NFT_MSG_DELTABLE: u16 = libc::NFT_MSG_DELTABLE as u16;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = libc::NFT_MSG_NEWCHAIN as u16;
pub(crate) const NFT_MSG_GETCHAIN: u16 = libc::NFT_MSG_GETCHAIN as u16;
pub(crate) const NFT_MSG_DELCHAIN: u16 = libc::NFT_MSG_DELCHAIN as u16;
pub(crate) const NFT_MSG_NEWRULE: u16 = libc::NFT_MSG_NEWRULE as u16;
pub(crate) const NFT_MSG_GETRULE: u16 = libc::NFT_MSG_GETRULE as u16;
pub(crate) const NFT_MSG_DELRULE: u16 = libc::NFT_MSG_DELRULE as u16;
pub(crate) const NFT_MSG_NEWSET: u16 = libc::NFT_MSG_NEWSET as u16;
pub(crate) const NFT_MSG_GETSET: u16 = libc::NFT_MSG_GETSET as u16;
pub(crate) const NFT_MSG_DELSET: u16 = libc::NFT_MSG_DELSET as u16;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = libc::NFT_MSG_NEWSETELEM as u16;
pub(crate) const NFT_MSG_GETSETELEM: u16 = libc::NFT_MSG_GETSETELEM as u16;
pub(crate) const NFT_MSG_DELSETELEM: u16 = libc::NFT_MSG_DELSETELEM as u16;

// ---- nf_tables attributes as the kernel dumps them (linux/netfilter/nf_tables.h) ----
// libc has none of these; read-back walks them, encoding goes through libnftnl (below).

// enum nft_table_attributes
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_TABLE_USERDATA: u16 = 6;
// enum nft_chain_attributes
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_USERDATA: u16 = 12;
// enum nft_hook_attributes
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(crate) const NFTA_RULE_USERDATA: u16 = 7;
// enum nft_expr_attributes
pub(crate) const NFTA_EXPR_NAME: u16 = 1;
pub(crate) const NFTA_EXPR_DATA: u16 = 2;
// enum nft_counter_attributes
pub(crate) const NFTA_COUNTER_PACKETS: u16 = 2;
// enum nft_set_attributes
pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
pub(crate) const NFTA_SET_USERDATA: u16 = 13;
/// The set's one expression (`counter`), or with several, NFTA_SET_EXPRESSIONS.
pub(crate) const NFTA_SET_EXPR: u16 = 17;
pub(crate) const NFTA_SET_EXPRESSIONS: u16 = 18;
// enum nft_set_elem_list_attributes
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
// enum nft_set_elem_attributes
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(crate) const NFTA_SET_ELEM_FLAGS: u16 = 3;
/// u64, milliseconds left before the element expires (big endian).
pub(crate) const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
pub(crate) const NFTA_SET_ELEM_KEY_END: u16 = 10;
/// An element's one expression (its `counter`), or with several, NFTA_SET_ELEM_EXPRESSIONS.
pub(crate) const NFTA_SET_ELEM_EXPR: u16 = 7;
pub(crate) const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
// enum nft_data_attributes
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
/// The value an `immediate` expression loads (a verdict for a rule's last one).
pub(crate) const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_verdict_attributes
pub(crate) const NFTA_VERDICT_CODE: u16 = 1;
pub(crate) const NFTA_VERDICT_CHAIN: u16 = 2;

// ---- set and element flags, data types (linux/netfilter/nf_tables.h) ----------------

pub(crate) const NFT_SET_ANONYMOUS: u32 = libc::NFT_SET_ANONYMOUS as u32;
pub(crate) const NFT_SET_CONSTANT: u32 = libc::NFT_SET_CONSTANT as u32;
pub(crate) const NFT_SET_INTERVAL: u32 = libc::NFT_SET_INTERVAL as u32;
pub(crate) const NFT_SET_MAP: u32 = libc::NFT_SET_MAP as u32;
pub(crate) const NFT_SET_TIMEOUT: u32 = libc::NFT_SET_TIMEOUT as u32;
/// enum nft_set_flags (libc stops before it).
pub(crate) const NFT_SET_CONCAT: u32 = 0x80;
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = libc::NFT_SET_ELEM_INTERVAL_END as u32;
pub(crate) const NFT_DATA_VERDICT: u32 = libc::NFT_DATA_VERDICT;

// ---- registers and verdicts (linux/netfilter/nf_tables.h, linux/netfilter.h) --------

pub(crate) const NFT_REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;
pub(crate) const NFT_REG_1: u32 = libc::NFT_REG_1 as u32;
pub(crate) const NFT_REG32_00: u32 = libc::NFT_REG32_00 as u32;
pub(crate) const NF_DROP: u32 = libc::NF_DROP as u32;
pub(crate) const NF_ACCEPT: u32 = libc::NF_ACCEPT as u32;
// Negative verdicts travel as their two's complement u32.
pub(crate) const NFT_JUMP: u32 = libc::NFT_JUMP as u32;
pub(crate) const NFT_GOTO: u32 = libc::NFT_GOTO as u32;
pub(crate) const NFT_RETURN: u32 = libc::NFT_RETURN as u32;

// ---- expression operands (linux/netfilter/nf_tables.h unless said) ------------------

pub(crate) const NFT_META_NFPROTO: u32 = libc::NFT_META_NFPROTO as u32;
pub(crate) const NFT_META_L4PROTO: u32 = libc::NFT_META_L4PROTO as u32;
pub(crate) const NFT_META_MARK: u32 = libc::NFT_META_MARK as u32;
/// enum nft_socket_keys: `socket transparent` (libc has none of them).
pub(crate) const NFT_SOCKET_TRANSPARENT: u32 = 0;
pub(crate) const NFT_PAYLOAD_NETWORK_HEADER: u32 = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
pub(crate) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
pub(crate) const NFT_CMP_EQ: u32 = libc::NFT_CMP_EQ as u32;
pub(crate) const NFT_CMP_NEQ: u32 = libc::NFT_CMP_NEQ as u32;
pub(crate) const NFT_CT_STATE: u32 = libc::NFT_CT_STATE as u32;
/// NF_CT_STATE_BIT(IP_CT_ESTABLISHED) (linux/netfilter/nf_conntrack_common.h).
pub(crate) const NF_CT_STATE_ESTABLISHED_BIT: u32 = 1 << 1;
/// NF_CT_STATE_BIT(IP_CT_RELATED) (linux/netfilter/nf_conntrack_common.h).
pub(crate) const NF_CT_STATE_RELATED_BIT: u32 = 1 << 2;
/// NF_CT_STATE_BIT(IP_CT_NEW) (linux/netfilter/nf_conntrack_common.h).
pub(crate) const NF_CT_STATE_NEW_BIT: u32 = 1 << 3;
/// `limit ... packets` (enum nft_limit_type).
pub(crate) const NFT_LIMIT_PKTS: u32 = libc::NFT_LIMIT_PKTS as u32;
/// `limit rate N/second`: the limit's unit is a number of seconds.
pub(crate) const LIMIT_UNIT_SECOND: u64 = 1;
pub(crate) const NFT_LOOKUP_F_INV: u32 = libc::NFT_LOOKUP_F_INV as u32;
pub(crate) const NFT_BYTEORDER_HTON: u32 = libc::NFT_BYTEORDER_HTON as u32;
/// enum nft_fib_result.
pub(crate) const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
/// enum nft_fib_flags.
pub(crate) const NFTA_FIB_F_SADDR: u32 = 1;
/// Route type of a local address (linux/rtnetlink.h).
pub(crate) const RTN_LOCAL: u32 = libc::RTN_LOCAL as u32;
pub(crate) const IPPROTO_ICMPV6: u8 = libc::IPPROTO_ICMPV6 as u8;

// ---- nft's user data and datatypes (libnftnl/udata.h via nftnl-sys; nftables) -------
// The kernel stores these blobs and ids unread; `nft list` decodes them.

pub(crate) const NFTNL_UDATA_COMMENT: u8 = nftnl_sys::NFTNL_UDATA_TABLE_COMMENT as u8;
pub(crate) const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = nftnl_sys::NFTNL_UDATA_SET_KEYBYTEORDER as u8;
pub(crate) const NFTNL_UDATA_SET_DATABYTEORDER: u8 = nftnl_sys::NFTNL_UDATA_SET_DATABYTEORDER as u8;
pub(crate) const NFTNL_UDATA_SET_KEY_TYPEOF: u8 = nftnl_sys::NFTNL_UDATA_SET_KEY_TYPEOF as u8;
pub(crate) const NFTNL_UDATA_SET_DATA_INTERVAL: u8 = nftnl_sys::NFTNL_UDATA_SET_DATA_INTERVAL as u8;
pub(crate) const NFTNL_UDATA_SET_COMMENT: u8 = nftnl_sys::NFTNL_UDATA_SET_COMMENT as u8;
pub(crate) const NFTNL_UDATA_SET_TYPEOF_EXPR: u8 = nftnl_sys::NFTNL_UDATA_SET_TYPEOF_EXPR as u8;
pub(crate) const NFTNL_UDATA_SET_TYPEOF_DATA: u8 = nftnl_sys::NFTNL_UDATA_SET_TYPEOF_DATA as u8;
pub(crate) const NFTNL_UDATA_SET_ELEM_FLAGS: u8 = nftnl_sys::NFTNL_UDATA_SET_ELEM_FLAGS as u8;
pub(crate) const NFTNL_SET_ELEM_F_INTERVAL_OPEN: u32 = nftnl_sys::NFTNL_SET_ELEM_F_INTERVAL_OPEN;

// nftables include/datatype.h: enum datatypes, TYPE_BITS, enum byteorder.
pub(crate) const TYPE_IPADDR: u32 = 7;
pub(crate) const TYPE_IP6ADDR: u32 = 8;
pub(crate) const TYPE_INET_PROTOCOL: u32 = 12;
pub(crate) const TYPE_INET_SERVICE: u32 = 13;
pub(crate) const TYPE_ICMP6_TYPE: u32 = 29;
/// Bits per datatype in a concatenated type id.
pub(crate) const TYPE_BITS: u32 = 6;
pub(crate) const BYTEORDER_INVALID: u32 = 0;
pub(crate) const BYTEORDER_HOST: u32 = 1;
pub(crate) const BYTEORDER_BIG: u32 = 2;
// nftables include/expression.h: enum expr_types.
pub(crate) const EXPR_PAYLOAD: u32 = 7;
pub(crate) const EXPR_CONCAT: u32 = 13;
// nftables src/payload.c: the typeof user data of a payload key, and include/proto.h.
pub(crate) const NFTNL_UDATA_SET_KEY_PAYLOAD_DESC: u8 = 0;
pub(crate) const NFTNL_UDATA_SET_KEY_PAYLOAD_TYPE: u8 = 1;
pub(crate) const PROTO_DESC_ICMPV6: u32 = 14;
pub(crate) const ICMP6HDR_TYPE: u32 = 1;

// ---- libnftnl object attribute ids (libnftnl/*.h via nftnl-sys) ---------------------

/// What the libnftnl setters of `sys.rs` take.
pub(crate) mod nftnl_attr {
    pub const TABLE_NAME: u32 = nftnl_sys::NFTNL_TABLE_NAME;
    pub const TABLE_FLAGS: u32 = nftnl_sys::NFTNL_TABLE_FLAGS;
    pub const TABLE_USERDATA: u32 = nftnl_sys::NFTNL_TABLE_USERDATA;
    pub const CHAIN_NAME: u32 = nftnl_sys::NFTNL_CHAIN_NAME;
    pub const CHAIN_TABLE: u32 = nftnl_sys::NFTNL_CHAIN_TABLE;
    pub const CHAIN_HOOKNUM: u32 = nftnl_sys::NFTNL_CHAIN_HOOKNUM;
    pub const CHAIN_PRIO: u32 = nftnl_sys::NFTNL_CHAIN_PRIO;
    pub const CHAIN_POLICY: u32 = nftnl_sys::NFTNL_CHAIN_POLICY;
    pub const CHAIN_TYPE: u32 = nftnl_sys::NFTNL_CHAIN_TYPE;
    pub const CHAIN_USERDATA: u32 = nftnl_sys::NFTNL_CHAIN_USERDATA;
    pub const RULE_FAMILY: u32 = nftnl_sys::NFTNL_RULE_FAMILY;
    pub const RULE_TABLE: u32 = nftnl_sys::NFTNL_RULE_TABLE;
    pub const RULE_CHAIN: u32 = nftnl_sys::NFTNL_RULE_CHAIN;
    pub const RULE_USERDATA: u32 = nftnl_sys::NFTNL_RULE_USERDATA;
    pub const SET_TABLE: u32 = nftnl_sys::NFTNL_SET_TABLE;
    pub const SET_NAME: u32 = nftnl_sys::NFTNL_SET_NAME;
    pub const SET_FLAGS: u32 = nftnl_sys::NFTNL_SET_FLAGS;
    pub const SET_KEY_TYPE: u32 = nftnl_sys::NFTNL_SET_KEY_TYPE;
    pub const SET_KEY_LEN: u32 = nftnl_sys::NFTNL_SET_KEY_LEN;
    pub const SET_DATA_TYPE: u32 = nftnl_sys::NFTNL_SET_DATA_TYPE;
    pub const SET_DATA_LEN: u32 = nftnl_sys::NFTNL_SET_DATA_LEN;
    pub const SET_FAMILY: u32 = nftnl_sys::NFTNL_SET_FAMILY;
    pub const SET_ID: u32 = nftnl_sys::NFTNL_SET_ID;
    pub const SET_DESC_SIZE: u32 = nftnl_sys::NFTNL_SET_DESC_SIZE;
    pub const SET_USERDATA: u32 = nftnl_sys::NFTNL_SET_USERDATA;
    pub const SET_DESC_CONCAT: u32 = nftnl_sys::NFTNL_SET_DESC_CONCAT;
    /// A u64 of milliseconds, in host order (libnftnl converts it).
    pub const SET_TIMEOUT: u32 = nftnl_sys::NFTNL_SET_TIMEOUT;
    pub const ELEM_FLAGS: u32 = nftnl_sys::NFTNL_SET_ELEM_FLAGS;
    pub const ELEM_KEY: u32 = nftnl_sys::NFTNL_SET_ELEM_KEY;
    pub const ELEM_VERDICT: u32 = nftnl_sys::NFTNL_SET_ELEM_VERDICT;
    pub const ELEM_CHAIN: u32 = nftnl_sys::NFTNL_SET_ELEM_CHAIN;
    pub const ELEM_USERDATA: u32 = nftnl_sys::NFTNL_SET_ELEM_USERDATA;
    pub const ELEM_KEY_END: u32 = nftnl_sys::NFTNL_SET_ELEM_KEY_END;

    pub const META_KEY: u32 = nftnl_sys::NFTNL_EXPR_META_KEY;
    pub const META_DREG: u32 = nftnl_sys::NFTNL_EXPR_META_DREG;
    pub const CMP_SREG: u32 = nftnl_sys::NFTNL_EXPR_CMP_SREG;
    pub const CMP_OP: u32 = nftnl_sys::NFTNL_EXPR_CMP_OP;
    pub const CMP_DATA: u32 = nftnl_sys::NFTNL_EXPR_CMP_DATA;
    pub const PAYLOAD_DREG: u32 = nftnl_sys::NFTNL_EXPR_PAYLOAD_DREG;
    pub const PAYLOAD_BASE: u32 = nftnl_sys::NFTNL_EXPR_PAYLOAD_BASE;
    pub const PAYLOAD_OFFSET: u32 = nftnl_sys::NFTNL_EXPR_PAYLOAD_OFFSET;
    pub const PAYLOAD_LEN: u32 = nftnl_sys::NFTNL_EXPR_PAYLOAD_LEN;
    pub const LOOKUP_SREG: u32 = nftnl_sys::NFTNL_EXPR_LOOKUP_SREG;
    pub const LOOKUP_DREG: u32 = nftnl_sys::NFTNL_EXPR_LOOKUP_DREG;
    pub const LOOKUP_FLAGS: u32 = nftnl_sys::NFTNL_EXPR_LOOKUP_FLAGS;
    pub const LOOKUP_SET: u32 = nftnl_sys::NFTNL_EXPR_LOOKUP_SET;
    pub const LOOKUP_SET_ID: u32 = nftnl_sys::NFTNL_EXPR_LOOKUP_SET_ID;
    pub const IMM_DREG: u32 = nftnl_sys::NFTNL_EXPR_IMM_DREG;
    pub const IMM_VERDICT: u32 = nftnl_sys::NFTNL_EXPR_IMM_VERDICT;
    pub const IMM_CHAIN: u32 = nftnl_sys::NFTNL_EXPR_IMM_CHAIN;
    pub const CT_KEY: u32 = nftnl_sys::NFTNL_EXPR_CT_KEY;
    pub const CT_DREG: u32 = nftnl_sys::NFTNL_EXPR_CT_DREG;
    pub const BITWISE_SREG: u32 = nftnl_sys::NFTNL_EXPR_BITWISE_SREG;
    pub const BITWISE_DREG: u32 = nftnl_sys::NFTNL_EXPR_BITWISE_DREG;
    pub const BITWISE_LEN: u32 = nftnl_sys::NFTNL_EXPR_BITWISE_LEN;
    pub const BITWISE_MASK: u32 = nftnl_sys::NFTNL_EXPR_BITWISE_MASK;
    pub const BITWISE_XOR: u32 = nftnl_sys::NFTNL_EXPR_BITWISE_XOR;
    pub const FIB_DREG: u32 = nftnl_sys::NFTNL_EXPR_FIB_DREG;
    pub const FIB_RESULT: u32 = nftnl_sys::NFTNL_EXPR_FIB_RESULT;
    pub const FIB_FLAGS: u32 = nftnl_sys::NFTNL_EXPR_FIB_FLAGS;
    pub const BYTEORDER_DREG: u32 = nftnl_sys::NFTNL_EXPR_BYTEORDER_DREG;
    pub const BYTEORDER_SREG: u32 = nftnl_sys::NFTNL_EXPR_BYTEORDER_SREG;
    pub const BYTEORDER_OP: u32 = nftnl_sys::NFTNL_EXPR_BYTEORDER_OP;
    pub const BYTEORDER_LEN: u32 = nftnl_sys::NFTNL_EXPR_BYTEORDER_LEN;
    pub const BYTEORDER_SIZE: u32 = nftnl_sys::NFTNL_EXPR_BYTEORDER_SIZE;
    pub const LOG_PREFIX: u32 = nftnl_sys::NFTNL_EXPR_LOG_PREFIX;
    /// A u16.
    pub const LOG_GROUP: u32 = nftnl_sys::NFTNL_EXPR_LOG_GROUP;
    /// u64s.
    pub const LIMIT_RATE: u32 = nftnl_sys::NFTNL_EXPR_LIMIT_RATE;
    pub const LIMIT_UNIT: u32 = nftnl_sys::NFTNL_EXPR_LIMIT_UNIT;
    pub const LIMIT_BURST: u32 = nftnl_sys::NFTNL_EXPR_LIMIT_BURST;
    pub const LIMIT_TYPE: u32 = nftnl_sys::NFTNL_EXPR_LIMIT_TYPE;
    pub const LIMIT_FLAGS: u32 = nftnl_sys::NFTNL_EXPR_LIMIT_FLAGS;
    pub const META_SREG: u32 = nftnl_sys::NFTNL_EXPR_META_SREG;
    pub const IMM_DATA: u32 = nftnl_sys::NFTNL_EXPR_IMM_DATA;
    pub const SOCKET_KEY: u32 = nftnl_sys::NFTNL_EXPR_SOCKET_KEY;
    pub const SOCKET_DREG: u32 = nftnl_sys::NFTNL_EXPR_SOCKET_DREG;
    pub const TPROXY_FAMILY: u32 = nftnl_sys::NFTNL_EXPR_TPROXY_FAMILY;
    pub const TPROXY_REG_PORT: u32 = nftnl_sys::NFTNL_EXPR_TPROXY_REG_PORT;
}

// ---- ctnetlink (linux/netfilter/nfnetlink_conntrack.h) ------------------------------
// libc has none of these.

// enum cntl_msg_types
pub(crate) const IPCTNL_MSG_CT_NEW: u16 = 0;
pub(crate) const IPCTNL_MSG_CT_GET: u16 = 1;
pub(crate) const IPCTNL_MSG_CT_DELETE: u16 = 2;
pub(crate) const IPCTNL_MSG_CT_GET_STATS: u16 = 5;
// enum ctattr_stats_global
pub(crate) const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
// enum ctattr_type
pub(crate) const CTA_TUPLE_ORIG: u16 = 1;
pub(crate) const CTA_TUPLE_REPLY: u16 = 2;
pub(crate) const CTA_TIMEOUT: u16 = 7;
pub(crate) const CTA_ID: u16 = 12;
pub(crate) const CTA_ZONE: u16 = 18;
pub(crate) const CTA_FILTER: u16 = 25;
// enum ctattr_tuple
pub(crate) const CTA_TUPLE_IP: u16 = 1;
pub(crate) const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
pub(crate) const CTA_IP_V4_SRC: u16 = 1;
pub(crate) const CTA_IP_V4_DST: u16 = 2;
pub(crate) const CTA_IP_V6_SRC: u16 = 3;
pub(crate) const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
pub(crate) const CTA_PROTO_NUM: u16 = 1;
pub(crate) const CTA_PROTO_SRC_PORT: u16 = 2;
pub(crate) const CTA_PROTO_DST_PORT: u16 = 3;
// enum ctattr_filter, and CTA_FILTER_FLAG(CTA_IP_SRC)
pub(crate) const CTA_FILTER_ORIG_FLAGS: u16 = 1;
pub(crate) const CTA_FILTER_REPLY_FLAGS: u16 = 2;
pub(crate) const CTA_FILTER_FLAG_CTA_IP_SRC: u32 = 1 << 0;

// ---- nfnetlink_log (linux/netfilter/nfnetlink_log.h) --------------------------------

pub(crate) const NFNL_SUBSYS_ULOG: u16 = libc::NFNL_SUBSYS_ULOG as u16;
pub(crate) const NFULNL_MSG_PACKET: u16 = libc::NFULNL_MSG_PACKET as u16;
pub(crate) const NFULNL_MSG_CONFIG: u16 = libc::NFULNL_MSG_CONFIG as u16;
// enum nfulnl_attr_type
pub(crate) const NFULA_PAYLOAD: u16 = libc::NFULA_PAYLOAD as u16;
pub(crate) const NFULA_PREFIX: u16 = libc::NFULA_PREFIX as u16;
pub(crate) const NFULA_SEQ: u16 = libc::NFULA_SEQ as u16;
// enum nfulnl_attr_config and enum nfulnl_msg_config_cmds
pub(crate) const NFULA_CFG_CMD: u16 = libc::NFULA_CFG_CMD as u16;
pub(crate) const NFULA_CFG_MODE: u16 = libc::NFULA_CFG_MODE as u16;
pub(crate) const NFULA_CFG_FLAGS: u16 = libc::NFULA_CFG_FLAGS as u16;
pub(crate) const NFULNL_CFG_CMD_BIND: u8 = libc::NFULNL_CFG_CMD_BIND as u8;
pub(crate) const NFULNL_COPY_PACKET: u8 = libc::NFULNL_COPY_PACKET as u8;
/// Number the instance's messages (`NFULA_SEQ`): a gap is a message the socket lost.
pub(crate) const NFULNL_CFG_F_SEQ: u16 = libc::NFULNL_CFG_F_SEQ as u16;
/// `struct nfulnl_msg_config_mode`: `__be32 copy_range; __u8 copy_mode; __u8 _pad`.
pub(crate) const NFULNL_CONFIG_MODE_LEN: usize = 6;

// ---- packet headers (linux/in.h, linux/ip.h, linux/ipv6.h) ---------------------------

pub(crate) const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
pub(crate) const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;
pub(crate) const IPPROTO_SCTP: u8 = libc::IPPROTO_SCTP as u8;
/// The fixed IPv6 header.
pub(crate) const IPV6_HDRLEN: usize = 40;
/// The shortest IPv4 header (IHL 5).
pub(crate) const IPV4_MIN_HDRLEN: usize = 20;
