//! The only unsafe code of nftpol: thin owners of libnftnl objects and a few syscalls.
//!
//! Owns: allocating, filling and freeing libnftnl objects (table, chain, rule, expression,
//! set, set element) and asking libnftnl to serialise them into one netlink message;
//! the socket options and `setns` that have no safe wrapper. Every function here is a safe
//! wrapper whose preconditions are checked or upheld by the types.
//!
//! Must not: decide *what* to send (that is `encode.rs`), talk to the kernel beyond the
//! raw syscalls (that is `batch.rs`), or hand a raw pointer to anyone outside this file.
//!
//! Built against the libnftnl 1.2.4 API (Debian 12): `nftnl-sys` is pinned with the
//! `nftnl-1-2-4` feature in Cargo.toml, so the bindings match the linked library.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use mnl::mnl_sys;
use nftnl_sys as sys;
use nftnl_sys::libc;

/// The largest nf_tables message: a set element nest is limited by the 16-bit attribute
/// length, so a message is at most 64 KiB plus headers (nft uses the same bound).
const NLMSG_MAXSIZE: usize = u16::MAX as usize + 4096;

fn cstring(s: &str) -> CString {
    // Names and comments come from the model; an interior NUL cannot be sent to the
    // kernel anyway, so cut there rather than panic.
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no interior NUL after cut")
}

/// A zeroed, 4-byte aligned scratch buffer large enough for any one message.
struct MsgBuf(Vec<u32>);

impl MsgBuf {
    fn new() -> Self {
        MsgBuf(vec![0u32; NLMSG_MAXSIZE / 4 + 1])
    }
    fn ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr().cast()
    }
    /// Copy out the message that starts at the buffer's beginning.
    fn take(&self, nlh: *mut libc::nlmsghdr) -> Vec<u8> {
        // SAFETY: `nlh` was returned by nftnl_nlmsg_build_hdr on this buffer, so it points
        // at its start; libnftnl keeps nlmsg_len within the buffer (messages are bounded by
        // NLMSG_MAXSIZE, see above), so the slice lies inside the allocation.
        unsafe {
            let len = (*nlh).nlmsg_len as usize;
            assert!(
                len <= self.0.len() * 4,
                "netlink message overflowed its buffer"
            );
            std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), len).to_vec()
        }
    }
}

/// Build one message: header by libnftnl, payload by `fill`.
fn build_msg(
    ty: u16,
    family: u16,
    flags: u16,
    seq: u32,
    fill: impl FnOnce(*mut libc::nlmsghdr),
) -> Vec<u8> {
    let mut buf = MsgBuf::new();
    // SAFETY: the buffer is larger than any nf_tables message and 4-byte aligned.
    let nlh = unsafe { sys::nftnl_nlmsg_build_hdr(buf.ptr(), ty, family, flags, seq) };
    assert!(!nlh.is_null());
    fill(nlh);
    buf.take(nlh)
}

/// NFNL_MSG_BATCH_BEGIN (`begin`) or NFNL_MSG_BATCH_END for the nf_tables subsystem.
pub fn batch_marker(begin: bool, seq: u32) -> Vec<u8> {
    let mut buf = MsgBuf::new();
    // SAFETY: as in build_msg; these only write a header and a nfgenmsg.
    let nlh = unsafe {
        if begin {
            sys::nftnl_batch_begin(buf.ptr(), seq)
        } else {
            sys::nftnl_batch_end(buf.ptr(), seq)
        }
    };
    assert!(!nlh.is_null());
    buf.take(nlh)
}

macro_rules! owner {
    ($name:ident, $raw:ty, $alloc:path, $free:path) => {
        pub struct $name(NonNull<$raw>);
        impl $name {
            fn alloc() -> Self {
                // SAFETY: plain allocation; a null return is checked.
                let p = unsafe { $alloc() };
                $name(NonNull::new(p).expect("libnftnl allocation failed"))
            }
        }
        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: we own the object (ownership-transferring calls forget self).
                unsafe { $free(self.0.as_ptr()) }
            }
        }
    };
}

macro_rules! setters {
    ($name:ident, $set_u32:path, $set_str:path, $set_data:path) => {
        impl $name {
            pub fn set_u32(&mut self, attr: u32, v: u32) -> &mut Self {
                // SAFETY: valid object; libnftnl checks `attr` against its attribute table.
                unsafe { $set_u32(self.0.as_ptr(), attr as u16, v) };
                self
            }
            pub fn set_str(&mut self, attr: u32, s: &str) -> &mut Self {
                let c = cstring(s);
                // SAFETY: libnftnl copies (strdup) the string before we drop `c`.
                unsafe { $set_str(self.0.as_ptr(), attr as u16, c.as_ptr()) };
                self
            }
            pub fn set_data(&mut self, attr: u32, d: &[u8]) -> &mut Self {
                // SAFETY: libnftnl copies `d.len()` bytes from the slice.
                unsafe {
                    $set_data(
                        self.0.as_ptr(),
                        attr as u16,
                        d.as_ptr().cast::<c_void>(),
                        d.len() as u32,
                    )
                };
                self
            }
        }
    };
}

owner!(
    Table,
    sys::nftnl_table,
    sys::nftnl_table_alloc,
    sys::nftnl_table_free
);
setters!(
    Table,
    sys::nftnl_table_set_u32,
    sys::nftnl_table_set_str,
    sys::nftnl_table_set_data
);
owner!(
    Chain,
    sys::nftnl_chain,
    sys::nftnl_chain_alloc,
    sys::nftnl_chain_free
);
setters!(
    Chain,
    sys::nftnl_chain_set_u32,
    sys::nftnl_chain_set_str,
    sys::nftnl_chain_set_data
);
owner!(
    Rule,
    sys::nftnl_rule,
    sys::nftnl_rule_alloc,
    sys::nftnl_rule_free
);
setters!(
    Rule,
    sys::nftnl_rule_set_u32,
    sys::nftnl_rule_set_str,
    sys::nftnl_rule_set_data
);
owner!(
    Set,
    sys::nftnl_set,
    sys::nftnl_set_alloc,
    sys::nftnl_set_free
);
setters!(
    Set,
    sys::nftnl_set_set_u32,
    sys::nftnl_set_set_str,
    sys::nftnl_set_set_data
);
owner!(
    Elem,
    sys::nftnl_set_elem,
    sys::nftnl_set_elem_alloc,
    sys::nftnl_set_elem_free
);
setters!(
    Elem,
    sys::nftnl_set_elem_set_u32,
    sys::nftnl_set_elem_set_str,
    sys::nftnl_set_elem_set
);

// SAFETY: each owner holds the only pointer to a heap object libnftnl never shares
// between threads; moving it to another thread is as safe as moving a Box.
unsafe impl Send for Table {}
unsafe impl Send for Chain {}
unsafe impl Send for Rule {}
unsafe impl Send for Set {}
unsafe impl Send for Elem {}

impl Table {
    pub fn new() -> Self {
        Self::alloc()
    }
    pub fn msg(&self, ty: u16, family: u16, flags: u16, seq: u32) -> Vec<u8> {
        // SAFETY: valid header and object; the payload fits the buffer.
        build_msg(ty, family, flags, seq, |nlh| unsafe {
            sys::nftnl_table_nlmsg_build_payload(nlh, self.0.as_ptr())
        })
    }
}

impl Chain {
    pub fn new() -> Self {
        Self::alloc()
    }
    pub fn set_s32(&mut self, attr: u32, v: i32) -> &mut Self {
        // SAFETY: valid object, known attribute.
        unsafe { sys::nftnl_chain_set_s32(self.0.as_ptr(), attr as u16, v) };
        self
    }
    pub fn msg(&self, ty: u16, family: u16, flags: u16, seq: u32) -> Vec<u8> {
        // SAFETY: valid header and object.
        build_msg(ty, family, flags, seq, |nlh| unsafe {
            sys::nftnl_chain_nlmsg_build_payload(nlh, self.0.as_ptr())
        })
    }
}

/// One expression; it is moved into a [`Rule`] by [`Rule::add_expr`]. It keeps its name,
/// which is what read-back sees of it (drift compares rules by expression names).
pub struct Expr(NonNull<sys::nftnl_expr>, &'static str);

// SAFETY: as for the owners above.
unsafe impl Send for Expr {}

impl Drop for Expr {
    fn drop(&mut self) {
        // SAFETY: only reached while we still own it (add_expr forgets self).
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
    }
}

impl Expr {
    pub fn new(name: &'static str) -> Self {
        let c = cstring(name);
        // SAFETY: libnftnl looks the name up in its expression table; null if unknown.
        let p = unsafe { sys::nftnl_expr_alloc(c.as_ptr()) };
        Expr(
            NonNull::new(p).unwrap_or_else(|| panic!("libnftnl has no expression {name}")),
            name,
        )
    }
    /// The kernel's name of the expression type, e.g. `payload`.
    pub fn name(&self) -> &'static str {
        self.1
    }
    pub fn u32(mut self, attr: u32, v: u32) -> Self {
        // SAFETY: valid expression; libnftnl ignores attributes it does not know.
        unsafe { sys::nftnl_expr_set_u32(self.0.as_mut(), attr as u16, v) };
        self
    }
    pub fn u16(mut self, attr: u32, v: u16) -> Self {
        // SAFETY: as for `u32`.
        unsafe { sys::nftnl_expr_set_u16(self.0.as_mut(), attr as u16, v) };
        self
    }
    pub fn u64(mut self, attr: u32, v: u64) -> Self {
        // SAFETY: as for `u32`.
        unsafe { sys::nftnl_expr_set_u64(self.0.as_mut(), attr as u16, v) };
        self
    }
    pub fn str(mut self, attr: u32, s: &str) -> Self {
        let c = cstring(s);
        // SAFETY: the string is copied.
        unsafe { sys::nftnl_expr_set_str(self.0.as_mut(), attr as u16, c.as_ptr()) };
        self
    }
    pub fn data(mut self, attr: u32, d: &[u8]) -> Self {
        // SAFETY: the bytes are copied (at most 16 for register data; libnftnl checks).
        unsafe {
            sys::nftnl_expr_set(
                self.0.as_mut(),
                attr as u16,
                d.as_ptr().cast(),
                d.len() as u32,
            )
        };
        self
    }
}

impl Rule {
    pub fn new() -> Self {
        Self::alloc()
    }
    pub fn add_expr(&mut self, e: Expr) {
        let p = e.0.as_ptr();
        std::mem::forget(e);
        // SAFETY: the rule takes ownership of the expression and frees it with itself.
        unsafe { sys::nftnl_rule_add_expr(self.0.as_ptr(), p) }
    }
    pub fn msg(&self, ty: u16, family: u16, flags: u16, seq: u32) -> Vec<u8> {
        // SAFETY: valid header and object.
        build_msg(ty, family, flags, seq, |nlh| unsafe {
            sys::nftnl_rule_nlmsg_build_payload(nlh, self.0.as_ptr())
        })
    }
}

impl Set {
    pub fn new() -> Self {
        Self::alloc()
    }
    pub fn add_elem(&mut self, e: Elem) {
        let p = e.0.as_ptr();
        std::mem::forget(e);
        // SAFETY: the set takes ownership of the element.
        unsafe { sys::nftnl_set_elem_add(self.0.as_ptr(), p) }
    }
    /// Gives the set an expression that the kernel copies into every element it adds
    /// (`counter`: one counter per element).
    pub fn add_expr(&mut self, e: Expr) {
        let p = e.0.as_ptr();
        std::mem::forget(e);
        // SAFETY: the set takes ownership of the expression and frees it with itself, as
        // a rule does with `nftnl_rule_add_expr`.
        unsafe { sys::nftnl_set_add_expr(self.0.as_ptr(), p) }
    }
    pub fn msg(&self, ty: u16, family: u16, flags: u16, seq: u32) -> Vec<u8> {
        // SAFETY: valid header and object.
        build_msg(ty, family, flags, seq, |nlh| unsafe {
            sys::nftnl_set_nlmsg_build_payload(nlh, self.0.as_ptr())
        })
    }
    /// The set's elements as NEWSETELEM/DELSETELEM messages: libnftnl fills each message
    /// until the 64 KiB element nest is full, exactly as nft does. `seq(i)` numbers the
    /// i-th message.
    pub fn elem_msgs(
        &self,
        ty: u16,
        family: u16,
        flags: u16,
        mut seq: impl FnMut() -> u32,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // SAFETY: the iterator borrows the set, which outlives it (destroyed below).
        let iter = unsafe { sys::nftnl_set_elems_iter_create(self.0.as_ptr()) };
        assert!(!iter.is_null());
        loop {
            // SAFETY: valid iterator.
            if unsafe { sys::nftnl_set_elems_iter_cur(iter) }.is_null() {
                break;
            }
            let mut more = 0;
            let msg = build_msg(ty, family, flags, seq(), |nlh| {
                // SAFETY: valid header and iterator; returns 1 when elements remain.
                more = unsafe { sys::nftnl_set_elems_nlmsg_build_payload_iter(nlh, iter) };
            });
            out.push(msg);
            if more <= 0 {
                break;
            }
        }
        // SAFETY: created above, not used after this.
        unsafe { sys::nftnl_set_elems_iter_destroy(iter) };
        out
    }
}

impl Elem {
    pub fn new() -> Self {
        Self::alloc()
    }
}

/// The netfilter netlink socket: mnl opens, binds and sends; the options mnl lacks are
/// set here on its file descriptor.
pub struct Socket {
    sock: mnl::Socket,
}

// SAFETY: an mnl socket is a file descriptor plus its address; it is used by one thread
// at a time (we never share it), so moving it between threads is sound.
unsafe impl Send for Socket {}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` lives across the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Socket {
    pub fn open() -> io::Result<Self> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let s = Socket { sock };
        // Extended acks carry the kernel's error text; capped acks do not echo a 64 KiB
        // element message back for every error.
        let _ = setsockopt_int(s.fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let _ = setsockopt_int(s.fd(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        Ok(s)
    }

    fn fd(&self) -> i32 {
        // SAFETY: the mnl socket is valid for as long as `self`.
        unsafe { mnl_sys::mnl_socket_get_fd(self.sock.as_raw_socket()) }
    }

    /// Make room for a whole batch in one `sendmsg` and for every ack it triggers.
    /// The *FORCE options need CAP_NET_ADMIN, which programming nftables needs anyway;
    /// without it fall back to the capped plain options.
    pub fn size_buffers(&self, snd: usize, rcv: usize) {
        let fd = self.fd();
        let snd = snd.min(i32::MAX as usize / 2) as i32;
        let rcv = rcv.min(i32::MAX as usize / 2) as i32;
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd).is_err() {
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, snd);
        }
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv).is_err() {
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcv);
        }
    }

    pub fn set_recv_timeout(&self, secs: u64) {
        let tv = libc::timeval {
            tv_sec: secs as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `tv` lives across the call and its size is passed.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
    }

    /// One `sendto`: the kernel sees the whole buffer as one skb, hence one transaction.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        self.sock.send(data)
    }

    /// Receive one datagram if one is queued, without waiting (EAGAIN otherwise).
    pub fn recv_nowait(&self, buf: &mut RecvBuf) -> io::Result<usize> {
        let bytes = buf.bytes_mut();
        // SAFETY: the buffer is valid for writes of its length for the whole call.
        let n = unsafe {
            libc::recv(
                self.fd(),
                bytes.as_mut_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Receive one datagram (possibly many messages) into `buf`.
    pub fn recv(&self, buf: &mut RecvBuf) -> io::Result<usize> {
        let bytes = buf.bytes_mut();
        self.sock.recv_raw(bytes)
    }
}

/// A receive buffer aligned for `nlmsghdr`, as mnl requires.
pub struct RecvBuf(Vec<u64>);

impl RecvBuf {
    pub fn new(len: usize) -> Self {
        RecvBuf(vec![0u64; len.div_ceil(8)])
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u64 storage reinterpreted as bytes: same allocation, any bit pattern
        // is a valid u8, and the exclusive borrow of self prevents aliasing.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 8) }
    }
}

/// Move the calling thread into the network namespace at `path` (e.g. /run/netns/NAME).
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: plain syscall on an open fd; affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Effective uid 0 (tests use it to decide whether they can run).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The addresses of every interface of the calling thread's network namespace (what
/// `ip addr` lists): the node's own addresses, whose traffic takes the input and output
/// hooks rather than forward.
pub fn local_addrs() -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocates into `head`; freed below.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed; its
        // ifa_addr is null or points at a sockaddr whose family says its real type.
        unsafe {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match (*sa).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                            u32::from_be(sin.sin_addr.s_addr),
                        )));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                            sin6.sin6_addr.s6_addr,
                        )));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}
