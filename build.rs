//! Build step: opcodes.toml -> generated Rust and docs; key material -> embedded constants.
//!
//! Outputs in $OUT_DIR:
//! - `opcodes.rs`: one `#[repr(C)]` zerocopy struct per row, opcode constants,
//!   the audit metadata and the table hash (included by `src/opcodes.rs`);
//! - `dispatch.rs`: the server's function-pointer table (included by `src/server/dispatch.rs`);
//! - `OPCODES.md`: the auditors' table (committed as docs/OPCODES.md, checked by a test);
//! - `keys.rs`: the server public key(s), deployment key, version and build id.
//!
//! A malformed row stops the build with a message naming the row.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Every message is padded to a whole number of AES blocks.
const BLOCK: usize = 16;
/// Upper bound on a fixed `bytes` field (class bodies are bounded by their class).
const MAX_BYTES_FIELD: usize = 16_384;
/// Upper bound on any message: the largest size class fits under it.
const MAX_MESSAGE_LIMIT: usize = 16_896;
const HEADER_STRUCT: &str = "Header";
/// Size of `Header`; checked against the table in `parse`.
const HEADER_SIZE: usize = 24;

#[derive(Clone)]
struct Field {
    name: String,
    ty: FieldType,
    doc: String,
}

#[derive(Clone, Copy)]
enum FieldType {
    U8,
    U16,
    U32,
    U64,
    Bytes(usize),
    Str(usize),
    /// A classed family's body: `bytes[N]` with N set by each size class.
    Body,
}

impl FieldType {
    fn size(self) -> usize {
        match self {
            FieldType::U8 => 1,
            FieldType::U16 => 2,
            FieldType::U32 => 4,
            FieldType::U64 => 8,
            FieldType::Bytes(n) => n,
            FieldType::Str(n) => n + 1,
            FieldType::Body => 0,
        }
    }

    fn canonical(self) -> String {
        match self {
            FieldType::U8 => "u8".into(),
            FieldType::U16 => "u16".into(),
            FieldType::U32 => "u32".into(),
            FieldType::U64 => "u64".into(),
            FieldType::Bytes(n) => format!("bytes[{n}]"),
            FieldType::Str(n) => format!("str[{n}]"),
            FieldType::Body => "body".into(),
        }
    }
}

struct StructDef {
    name: String,
    doc: String,
    fields: Vec<Field>,
    /// Zero bytes appended so the size is a multiple of BLOCK (messages only).
    pad: usize,
}

impl StructDef {
    fn size(&self) -> usize {
        self.fields.iter().map(|f| f.ty.size()).sum::<usize>() + self.pad
    }
}

/// One size class (`[[class]]`): a body size and the opcode offset of its messages.
struct Class {
    letter: char,
    body: usize,
    offset: u32,
}

/// What a message of a classed family shares with its siblings.
struct Family {
    /// The family's struct name (`SendRoomMessage`); the head is `<name>Head`.
    name: String,
    /// The class letter of this member.
    class: char,
    /// The body field's name.
    body_field: String,
    /// Number of head fields (the body field follows them).
    head_fields: usize,
}

struct Message {
    mnemonic: String,
    family: Option<Family>,
    opcode: u32,
    direction: String,
    state: Option<String>,
    handler: Option<String>,
    /// Role bits that may send it (requests; 0 otherwise).
    roles: u8,
    doc: String,
    def: StructDef,
}

/// The built-in roles, as bits (`roles` in opcodes.toml; PROTOCOL.md §11).
const ROLES: [(&str, u8); 3] = [("user", 1), ("moderator", 2), ("admin", 4)];
/// The opcodes of the admin socket's directions, and only those.
const ADMIN_OPCODES: std::ops::RangeInclusive<u32> = 300_000..=300_099;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let table_path = root.join("opcodes.toml");
    println!("cargo:rerun-if-changed={}", table_path.display());
    println!("cargo:rerun-if-changed=build.rs");

    let text = fs::read_to_string(&table_path).unwrap_or_else(|e| fail(&format!("cannot read opcodes.toml: {e}")));
    let doc: toml::Value = text.parse().unwrap_or_else(|e| fail(&format!("opcodes.toml: {e}")));
    let (meta, classes, structs, messages) = parse(&doc);

    let (canon, hash) = table_hash(&meta, &classes, &structs, &messages);
    write(&out.join("canonical_table.txt"), &canon);
    write(&out.join("opcodes.rs"), &gen_rust(&meta, &classes, &structs, &messages, &hash));
    write(&out.join("dispatch.rs"), &gen_dispatch(&messages));
    let md = gen_markdown(&meta, &classes, &structs, &messages, &hash);
    write(&out.join("OPCODES.md"), &md);

    keys(&root, &out, &hash);
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("build.rs: {msg}");
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

struct Meta {
    version: u16,
    magic: String,
}

fn parse(doc: &toml::Value) -> (Meta, Vec<Class>, Vec<StructDef>, Vec<Message>) {
    let meta = doc.get("meta").unwrap_or_else(|| fail("opcodes.toml: missing [meta]"));
    let version = meta
        .get("protocol_version")
        .and_then(|v| v.as_integer())
        .unwrap_or_else(|| fail("[meta]: protocol_version missing"));
    let magic = str_of(meta, "magic", "[meta]");
    if magic.len() != 4 {
        fail("[meta]: magic must be 4 ASCII bytes");
    }
    let meta = Meta {
        version: u16::try_from(version).unwrap_or_else(|_| fail("[meta]: protocol_version out of range")),
        magic,
    };

    let mut classes: Vec<Class> = Vec::new();
    for (i, row) in doc.get("class").and_then(|v| v.as_array()).cloned().unwrap_or_default().iter().enumerate() {
        let ctx = format!("[[class]] #{}", i + 1);
        let letter = str_of(row, "letter", &ctx);
        let body =
            row.get("body").and_then(|v| v.as_integer()).unwrap_or_else(|| fail(&format!("{ctx}: body missing")));
        let offset = row
            .get("opcode_offset")
            .and_then(|v| v.as_integer())
            .unwrap_or_else(|| fail(&format!("{ctx}: opcode_offset missing")));
        let letter = match letter.as_bytes() {
            [b] if b.is_ascii_lowercase() => *b as char,
            _ => fail(&format!("{ctx}: letter must be one lowercase letter")),
        };
        if body <= 0 || body % BLOCK as i64 != 0 || classes.last().is_some_and(|c| c.body as i64 >= body) {
            fail(&format!("{ctx}: bodies are whole AES blocks, in increasing order"));
        }
        if classes.iter().any(|c| c.letter == letter || i64::from(c.offset) == offset) {
            fail(&format!("{ctx}: duplicate letter or opcode offset"));
        }
        let offset = u32::try_from(offset).unwrap_or_else(|_| fail(&format!("{ctx}: opcode_offset out of range")));
        classes.push(Class { letter, body: body as usize, offset });
    }

    let mut names = BTreeSet::new();
    let mut structs = Vec::new();
    for (i, row) in doc.get("struct").and_then(|v| v.as_array()).cloned().unwrap_or_default().iter().enumerate() {
        let name = str_of(row, "name", &format!("[[struct]] #{}", i + 1));
        let ctx = format!("[[struct]] {name}");
        if !names.insert(name.clone()) {
            fail(&format!("{ctx}: duplicate struct name"));
        }
        structs.push(StructDef { doc: str_of(row, "doc", &ctx), fields: fields_of(row, &ctx), name, pad: 0 });
    }
    let header_size = structs
        .iter()
        .find(|s| s.name == HEADER_STRUCT)
        .unwrap_or_else(|| fail("opcodes.toml: the Header struct is missing"))
        .size();
    if header_size != HEADER_SIZE {
        fail(&format!("[[struct]] Header: {header_size} bytes, build.rs expects {HEADER_SIZE}"));
    }

    let mut opcodes = BTreeSet::new();
    let mut mnemonics = BTreeSet::new();
    let mut messages = Vec::new();
    for (i, row) in doc.get("message").and_then(|v| v.as_array()).cloned().unwrap_or_default().iter().enumerate() {
        let mnemonic = str_of(row, "mnemonic", &format!("[[message]] #{}", i + 1));
        let ctx = format!("[[message]] {mnemonic}");
        let classed = row.get("classed").and_then(|v| v.as_bool()).unwrap_or(false);
        let want = if classed { 3 } else { 4 };
        if mnemonic.len() != want || !mnemonic.bytes().all(|b| b.is_ascii_lowercase()) {
            fail(&format!("{ctx}: mnemonic must be four lowercase letters (three for a classed family)"));
        }
        let opcode =
            row.get("opcode").and_then(|v| v.as_integer()).unwrap_or_else(|| fail(&format!("{ctx}: opcode missing")));
        let opcode = u32::try_from(opcode).unwrap_or_else(|_| fail(&format!("{ctx}: opcode out of range")));
        let direction = str_of(row, "direction", &ctx);
        let admin = direction.starts_with("admin_");
        if admin != ADMIN_OPCODES.contains(&opcode) {
            fail(&format!(
                "{ctx}: admin_request and admin_response opcodes are 300000-300099, and only theirs (opcode {opcode}, direction {direction})"
            ));
        }
        let roles = match (direction.as_str(), row.get("roles")) {
            ("request", None) => 1,
            ("request", Some(v)) => {
                let list =
                    v.as_array().unwrap_or_else(|| fail(&format!("{ctx}: `roles` must be a list of role names")));
                if list.is_empty() {
                    fail(&format!("{ctx}: `roles` names at least one role"));
                }
                list.iter().fold(0u8, |acc, r| {
                    let name = r.as_str().unwrap_or_default();
                    let bit = ROLES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
                    acc | bit.unwrap_or_else(|| fail(&format!("{ctx}: unknown role `{name}` (user, moderator, admin)")))
                })
            }
            (_, Some(_)) => fail(&format!("{ctx}: only network requests have `roles`")),
            (_, None) => 0,
        };
        let (state, handler) = match direction.as_str() {
            "admin_request" => {
                if row.get("state").is_some() {
                    fail(&format!("{ctx}: an admin_request has no session state"));
                }
                let handler = str_of(row, "handler", &ctx);
                if !handler.starts_with("admin::")
                    || !handler
                        .split("::")
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                {
                    fail(&format!("{ctx}: an admin handler is a path like `admin::function`"));
                }
                (None, Some(handler))
            }
            "request" => {
                let state = str_of(row, "state", &ctx);
                if !["await_login", "await_passphrase", "authenticated"].contains(&state.as_str()) {
                    fail(&format!("{ctx}: unknown state `{state}`"));
                }
                let handler = str_of(row, "handler", &ctx);
                if !handler.split("::").all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                {
                    fail(&format!("{ctx}: handler must be a path like `module::function`"));
                }
                (Some(state), Some(handler))
            }
            "response" | "event" | "admin_response" => {
                if row.get("state").is_some() || row.get("handler").is_some() {
                    fail(&format!("{ctx}: only requests have a state and a handler"));
                }
                (None, None)
            }
            other => fail(&format!(
                "{ctx}: direction `{other}` is not request, response, event, admin_request or admin_response"
            )),
        };
        let sname = str_of(row, "struct", &ctx);
        let doc_text = str_of(row, "doc", &ctx);
        let mut fields = fields_of(row, &ctx);
        // A plain message is one row; a classed family is one message per size class.
        let mut members = Vec::new();
        if classed {
            let body = fields.pop().filter(|f| matches!(f.ty, FieldType::Body));
            let body = body.unwrap_or_else(|| fail(&format!("{ctx}: a classed family's last field has type `body`")));
            if fields.iter().any(|f| matches!(f.ty, FieldType::Body)) || classes.is_empty() {
                fail(&format!("{ctx}: one `body` field, last, and at least one [[class]]"));
            }
            let head = format!("{sname}Head");
            if !names.insert(head.clone()) {
                fail(&format!("{ctx}: struct name `{head}` used twice"));
            }
            let head_doc = format!("The fields every size class of `{}*` shares (the body follows).", mnemonic);
            let head_fields = fields.len();
            structs.push(StructDef {
                name: head,
                doc: head_doc,
                fields: fields_of(row, &ctx)[..head_fields].to_vec(),
                pad: 0,
            });
            for c in &classes {
                let mut f = fields_of(row, &ctx);
                if let Some(b) = f.last_mut() {
                    b.ty = FieldType::Bytes(c.body);
                }
                let family =
                    Family { name: sname.clone(), class: c.letter, body_field: body.name.clone(), head_fields };
                let doc = format!("{doc_text} Class `{}`: a {}-byte body.", c.letter, c.body);
                members.push((
                    format!("{mnemonic}{}", c.letter),
                    opcode + c.offset,
                    format!("{sname}{}", c.letter.to_ascii_uppercase()),
                    doc,
                    f,
                    Some(family),
                ));
            }
        } else {
            if fields.iter().any(|f| matches!(f.ty, FieldType::Body)) {
                fail(&format!("{ctx}: only a classed family has a `body` field"));
            }
            members.push((mnemonic, opcode, sname, doc_text, fields, None));
        }
        for (mnemonic, opcode, sname, doc, fields, family) in members {
            if !opcodes.insert(opcode) || !mnemonics.insert(mnemonic.clone()) {
                fail(&format!("{ctx}: duplicate opcode or mnemonic ({mnemonic}, {opcode})"));
            }
            if !names.insert(sname.clone()) {
                fail(&format!("{ctx}: struct name `{sname}` used twice"));
            }
            let body: usize = header_size + fields.iter().map(|f| f.ty.size()).sum::<usize>();
            let pad = (BLOCK - body % BLOCK) % BLOCK;
            let def = StructDef { name: sname, doc: doc.clone(), fields, pad };
            if def.size() + header_size > MAX_MESSAGE_LIMIT {
                fail(&format!("{ctx}: {} bytes is over the {MAX_MESSAGE_LIMIT}-byte message limit", def.size()));
            }
            messages.push(Message {
                mnemonic,
                family,
                opcode,
                direction: direction.clone(),
                state: state.clone(),
                handler: handler.clone(),
                roles,
                doc,
                def,
            });
        }
    }
    messages.sort_by_key(|m| m.opcode);
    (meta, classes, structs, messages)
}

fn str_of(row: &toml::Value, key: &str, ctx: &str) -> String {
    row.get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| fail(&format!("{ctx}: `{key}` missing or not a string")))
}

fn fields_of(row: &toml::Value, ctx: &str) -> Vec<Field> {
    let list =
        row.get("fields").and_then(|v| v.as_array()).unwrap_or_else(|| fail(&format!("{ctx}: `fields` missing")));
    let mut seen = BTreeSet::new();
    list.iter()
        .map(|f| {
            let name = str_of(f, "name", ctx);
            let fctx = format!("{ctx} field {name}");
            if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                || name == "hdr"
                || name == "reserved"
            {
                fail(&format!("{fctx}: field names are snake_case and not `hdr`/`reserved`"));
            }
            if !seen.insert(name.clone()) {
                fail(&format!("{fctx}: duplicate field"));
            }
            let len = f.get("len").and_then(|v| v.as_integer());
            let ty = match (str_of(f, "type", &fctx).as_str(), len) {
                ("u8", None) => FieldType::U8,
                ("u16", None) => FieldType::U16,
                ("u32", None) => FieldType::U32,
                ("u64", None) => FieldType::U64,
                ("bytes", Some(n)) if (1..=MAX_BYTES_FIELD as i64).contains(&n) => FieldType::Bytes(n as usize),
                ("body", None) => FieldType::Body,
                ("str", Some(n)) if (1..=255).contains(&n) => FieldType::Str(n as usize),
                (t, l) => fail(&format!(
                    "{fctx}: bad type `{t}` with len {l:?} (bytes needs len 1..16384, str 1..255, integers none)"
                )),
            };
            Field { name, ty, doc: str_of(f, "doc", &fctx) }
        })
        .collect()
}

/// SHA-256 over a canonical text form of everything that shapes the wire.
/// The canonical table text (PROTOCOL.md §1) and its SHA-256.
fn table_hash(meta: &Meta, classes: &[Class], structs: &[StructDef], messages: &[Message]) -> (String, [u8; 32]) {
    let mut canon = format!("sotto opcode table\nversion {}\nmagic {}\n", meta.version, meta.magic);
    for c in classes {
        let _ = writeln!(canon, "class {} body {} offset {}", c.letter, c.body, c.offset);
    }
    let mut sorted: BTreeMap<&str, &StructDef> = BTreeMap::new();
    for s in structs {
        sorted.insert(&s.name, s);
    }
    for s in sorted.values() {
        canon_struct(&mut canon, "struct", s);
    }
    for m in messages {
        let head = format!("message {} {} {} {}", m.opcode, m.mnemonic, m.direction, m.state.as_deref().unwrap_or("-"));
        canon_struct(&mut canon, &head, &m.def);
    }
    let hash = Sha256::digest(canon.as_bytes()).into();
    (canon, hash)
}

fn canon_struct(out: &mut String, head: &str, s: &StructDef) {
    let _ = writeln!(out, "{head} {} size {}", s.name, s.size());
    for f in &s.fields {
        let _ = writeln!(out, "  {} {}", f.name, f.ty.canonical());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn camel_state(state: &str) -> &'static str {
    match state {
        "await_login" => "AwaitLogin",
        "await_passphrase" => "AwaitPassphrase",
        _ => "Authenticated",
    }
}

fn rust_type(ty: FieldType) -> String {
    match ty {
        FieldType::U8 => "u8".into(),
        FieldType::U16 => "U16".into(),
        FieldType::U32 => "U32".into(),
        FieldType::U64 => "U64".into(),
        FieldType::Bytes(n) | FieldType::Str(n) => format!("[u8; {n}]"),
        FieldType::Body => unreachable!("class bodies are expanded to bytes"),
    }
}

fn gen_struct(out: &mut String, s: &StructDef, is_message: bool) {
    let _ = writeln!(out, "/// {}", s.doc);
    let _ =
        writeln!(out, "#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq)]");
    let _ = writeln!(out, "#[repr(C)]\npub struct {} {{", s.name);
    if is_message {
        let _ =
            writeln!(out, "    /// Common header (opcode, status, code, message id, timestamp).\n    pub hdr: Header,");
    }
    for f in &s.fields {
        if let FieldType::Str(_) = f.ty {
            let _ = writeln!(out, "    /// Length in bytes of `{}`.\n    pub {}_len: u8,", f.name, f.name);
        }
        let _ = writeln!(out, "    /// {}\n    pub {}: {},", f.doc, f.name, rust_type(f.ty));
    }
    if s.pad > 0 {
        let _ =
            writeln!(out, "    /// Zero padding to a whole number of AES blocks.\n    pub reserved: [u8; {}],", s.pad);
    }
    let _ = writeln!(out, "}}\n");
    let total = if is_message { s.size() + HEADER_SIZE } else { s.size() };
    let _ = writeln!(out, "static_assertions::const_assert_eq!(core::mem::size_of::<{}>(), {total});", s.name);
    if is_message {
        let _ = writeln!(out, "static_assertions::const_assert_eq!(core::mem::size_of::<{}>() % {BLOCK}, 0);", s.name);
    }
    let strs: Vec<&Field> = s.fields.iter().filter(|f| matches!(f.ty, FieldType::Str(_))).collect();
    if !strs.is_empty() {
        let _ = writeln!(out, "impl {} {{", s.name);
        for f in strs {
            let _ = writeln!(
                out,
                "    /// `{n}` as UTF-8, checked against its length field.\n    pub fn {n}(&self) -> Result<&str, WireError> {{ fixed_str(&self.{n}, self.{n}_len) }}\n    /// Sets `{n}`, zero-filling the rest; fails when it does not fit.\n    pub fn set_{n}(&mut self, value: &str) -> Result<(), WireError> {{ set_fixed_str(&mut self.{n}, &mut self.{n}_len, value) }}",
                n = f.name
            );
        }
        let _ = writeln!(out, "}}\n");
    }
}

fn gen_rust(meta: &Meta, classes: &[Class], structs: &[StructDef], messages: &[Message], hash: &[u8; 32]) -> String {
    let mut out = String::from("// @generated by build.rs from opcodes.toml — do not edit\n\n");
    let _ = writeln!(out, "/// Protocol version from `[meta]`.\npub const PROTOCOL_VERSION: u16 = {};", meta.version);
    let _ = writeln!(out, "/// Handshake magic from `[meta]`.\npub const MAGIC: [u8; 4] = *b\"{}\";", meta.magic);
    let _ = writeln!(out, "/// SHA-256 of the canonical opcode table, exchanged in the handshake.\npub const TABLE_HASH: [u8; 32] = {hash:?};");
    let _ = writeln!(out, "/// The canonical opcode table text whose SHA-256 is `TABLE_HASH` (PROTOCOL.md §1).\npub const CANONICAL_TABLE: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/canonical_table.txt\"));");
    let max = messages.iter().map(|m| m.def.size() + HEADER_SIZE).max().unwrap_or(HEADER_SIZE);
    let _ = writeln!(out, "/// Largest message, in bytes: the record layer bounds frames with it.\npub const MAX_MESSAGE: usize = {max};\n");
    gen_classes(&mut out, classes);
    for s in structs {
        gen_struct(&mut out, s, false);
    }
    for m in messages {
        let _ = writeln!(
            out,
            "/// Opcode of `{}` ({}).\npub const {}: u32 = {};",
            m.mnemonic,
            m.def.name,
            m.mnemonic.to_uppercase(),
            m.opcode
        );
    }
    out.push('\n');
    for m in messages {
        match &m.family {
            Some(f) => gen_class_struct(&mut out, &m.def, f),
            None => gen_struct(&mut out, &m.def, true),
        }
        let _ = writeln!(
            out,
            "impl Message for {} {{\n    const OPCODE: u32 = {};\n    const MNEMONIC: &'static str = \"{}\";\n    fn header(&self) -> &Header {{ &self.hdr }}\n    fn header_mut(&mut self) -> &mut Header {{ &mut self.hdr }}\n}}\n",
            m.def.name, m.opcode, m.mnemonic
        );
    }
    let _ = writeln!(
        out,
        "/// Audit metadata for every message, sorted by opcode.\npub static OPCODES: [OpcodeInfo; {}] = [",
        messages.len()
    );
    for m in messages {
        let state =
            m.state.as_deref().map(|s| format!("Some(State::{})", camel_state(s))).unwrap_or_else(|| "None".into());
        let handler = m.handler.as_deref().map(|h| format!("Some({h:?})")).unwrap_or_else(|| "None".into());
        let dir = match m.direction.as_str() {
            "request" => "Request",
            "response" => "Response",
            "admin_request" => "AdminRequest",
            "admin_response" => "AdminResponse",
            _ => "Event",
        };
        let _ = writeln!(
            out,
            "    OpcodeInfo {{ opcode: {}, mnemonic: {:?}, direction: Direction::{dir}, struct_name: {:?}, size: core::mem::size_of::<{}>(), state: {state}, handler: {handler}, roles: {}, doc: {:?} }},",
            m.opcode, m.mnemonic, m.def.name, m.def.name, m.roles, m.doc
        );
    }
    out.push_str("];\n");
    out
}

/// The `Class` enum: one variant per `[[class]]` row.
fn gen_classes(out: &mut String, classes: &[Class]) {
    out.push_str("/// A size class (PROTOCOL.md §8): classed messages exist once per class, with this body size.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]\npub enum Class {\n");
    for c in classes {
        let _ = writeln!(
            out,
            "    /// Class `{}`: {}-byte bodies.\n    {},",
            c.letter,
            c.body,
            c.letter.to_ascii_uppercase()
        );
    }
    out.push_str("}\n\nimpl Class {\n");
    let all: Vec<String> = classes.iter().map(|c| format!("Class::{}", c.letter.to_ascii_uppercase())).collect();
    let _ = writeln!(
        out,
        "    /// Every class, smallest first.\n    pub const ALL: [Class; {}] = [{}];",
        classes.len(),
        all.join(", ")
    );
    let arms = |f: &dyn Fn(&Class) -> String| -> String {
        classes.iter().map(|c| format!("            Class::{} => {},\n", c.letter.to_ascii_uppercase(), f(c))).collect()
    };
    let _ = writeln!(out, "    /// Body size in bytes.\n    pub const fn body(self) -> usize {{\n        match self {{\n{}        }}\n    }}", arms(&|c| c.body.to_string()));
    let _ = writeln!(out, "    /// The letter that ends its messages' mnemonics.\n    pub const fn letter(self) -> char {{\n        match self {{\n{}        }}\n    }}", arms(&|c| format!("{:?}", c.letter)));
    let _ = writeln!(out, "    /// Added to a family's base opcode.\n    pub const fn opcode_offset(self) -> u32 {{\n        match self {{\n{}        }}\n    }}", arms(&|c| c.offset.to_string()));
    let _ = writeln!(out, "    /// The class whose letter is `b` (an ASCII byte).\n    pub const fn from_letter(b: u8) -> Option<Class> {{\n        match b {{\n{}            _ => None,\n        }}\n    }}", classes.iter().map(|c| format!("            b'{}' => Some(Class::{}),\n", c.letter, c.letter.to_ascii_uppercase())).collect::<String>());
    out.push_str("    /// The smallest class whose body holds `len` bytes.\n    pub fn fitting(len: usize) -> Option<Class> {\n        Class::ALL.into_iter().find(|c| c.body() >= len)\n    }\n");
    out.push_str("}\n\n");
}

/// A member of a classed family: the header, the shared head struct, the body, the padding.
fn gen_class_struct(out: &mut String, s: &StructDef, f: &Family) {
    let body = s.fields.last().map_or(0, |b| b.ty.size());
    let _ = writeln!(out, "/// {}", s.doc);
    let _ =
        writeln!(out, "#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq)]");
    let _ = writeln!(out, "#[repr(C)]\npub struct {} {{", s.name);
    let _ = writeln!(out, "    /// Common header (opcode, status, code, message id, timestamp).\n    pub hdr: Header,");
    let _ = writeln!(out, "    /// The fields every class of the family shares.\n    pub head: {}Head,", f.name);
    let _ = writeln!(out, "    /// The class's body ({body} bytes).\n    pub {}: [u8; {body}],", f.body_field);
    if s.pad > 0 {
        let _ =
            writeln!(out, "    /// Zero padding to a whole number of AES blocks.\n    pub reserved: [u8; {}],", s.pad);
    }
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(
        out,
        "static_assertions::const_assert_eq!(core::mem::size_of::<{}>(), {});",
        s.name,
        s.size() + HEADER_SIZE
    );
    let _ = writeln!(
        out,
        "static_assertions::const_assert_eq!(core::mem::size_of::<{}Head>(), {});",
        f.name,
        s.fields[..f.head_fields].iter().map(|x| x.ty.size()).sum::<usize>()
    );
    let _ = writeln!(out, "static_assertions::const_assert_eq!(core::mem::size_of::<{}>() % {BLOCK}, 0);", s.name);
    let _ = writeln!(
        out,
        "impl Classed for {} {{\n    type Head = {}Head;\n    const CLASS: Class = Class::{};\n    fn head(&self) -> &Self::Head {{ &self.head }}\n    fn head_mut(&mut self) -> &mut Self::Head {{ &mut self.head }}\n    fn body(&self) -> &[u8] {{ &self.{b} }}\n    fn body_mut(&mut self) -> &mut [u8] {{ &mut self.{b} }}\n}}\n",
        s.name,
        f.name,
        f.class.to_ascii_uppercase(),
        b = f.body_field
    );
}

fn gen_dispatch(messages: &[Message]) -> String {
    let requests: Vec<&Message> = messages.iter().filter(|m| m.direction == "request").collect();
    let mut out = String::from("// @generated by build.rs from opcodes.toml — do not edit\n\n");
    let _ = writeln!(
        out,
        "/// The request dispatch table, sorted by opcode for binary search.\npub static DISPATCH: [Entry; {}] = [",
        requests.len()
    );
    for m in requests {
        let state = m.state.as_deref().unwrap_or("authenticated");
        let variant = match state {
            "await_login" => "PreAuth",
            "await_passphrase" => "Passphrase",
            _ => "Authed",
        };
        let _ = writeln!(
            out,
            "    Entry {{ opcode: {}, mnemonic: {:?}, size: core::mem::size_of::<crate::opcodes::{}>(), state: State::{}, roles: {}, handler: Handler::{variant}(crate::server::handler::{}{}) }},",
            m.opcode,
            m.mnemonic,
            m.def.name,
            camel_state(state),
            m.roles,
            m.handler.as_deref().unwrap_or_default(),
            if m.family.is_some() { format!("::<crate::opcodes::{}>", m.def.name) } else { String::new() }
        );
    }
    out.push_str("];\n\n");
    // The admin socket's table: a separate array, so that no network frame can reach an admin handler.
    let admin: Vec<&Message> = messages.iter().filter(|m| m.direction == "admin_request").collect();
    let _ = writeln!(
        out,
        "/// The admin socket's dispatch table (sottoctl), sorted by opcode; never consulted for network frames.\npub static ADMIN_DISPATCH: [AdminEntry; {}] = [",
        admin.len()
    );
    for m in admin {
        let _ = writeln!(
            out,
            "    AdminEntry {{ opcode: {}, mnemonic: {:?}, size: core::mem::size_of::<crate::opcodes::{}>(), handler: crate::server::handler::{} }},",
            m.opcode,
            m.mnemonic,
            m.def.name,
            m.handler.as_deref().unwrap_or_default()
        );
    }
    out.push_str("];\n");
    out
}

/// `user, admin` for a role mask.
fn role_names(mask: u8) -> String {
    ROLES.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn gen_markdown(
    meta: &Meta,
    classes: &[Class],
    structs: &[StructDef],
    messages: &[Message],
    hash: &[u8; 32],
) -> String {
    let mut out = String::from("<!-- @generated by build.rs from opcodes.toml — do not edit; `make opcodes` rewrites it -->\n# sotto opcode table\n\n");
    let _ = writeln!(out, "Protocol version {}, magic `{}`, table hash `{}`.\n", meta.version, meta.magic, hex(hash));
    out.push_str("All integers are big-endian. `str[N]` is a one-byte length followed by N bytes (UTF-8, zero-filled). Every message starts with the 24-byte `Header` and ends with zero `reserved` bytes up to a multiple of 16.\n\n");
    let families: BTreeSet<String> =
        messages.iter().filter(|m| m.family.is_some()).map(|m| format!("`{}*`", &m.mnemonic[..3])).collect();
    let _ = writeln!(out, "Size classes: a classed family ({}) is one message per class, its mnemonic ending in the class letter, its opcode the family's base plus the class offset, its layout the family's head then the class's body.\n\n| class | body bytes | opcode offset |\n|---|---:|---:|", families.into_iter().collect::<Vec<_>>().join(", "));
    for c in classes {
        let _ = writeln!(out, "| `{}` | {} | {} |", c.letter, c.body, c.offset);
    }
    out.push('\n');
    out.push_str("`roles`: who may send a request (PROTOCOL.md §11), checked by the dispatch with size and state. The directions `admin_request` and `admin_response` (opcodes 300000-300099) travel only on the local admin socket, through a dispatch table of their own (PROTOCOL.md §12).\n\n");
    out.push_str("| opcode | mnemonic | direction | struct | size | state | roles | handler | description |\n|---:|---|---|---|---:|---|---|---|---|\n");
    for m in messages {
        let roles = if m.roles == 0 { "-".to_owned() } else { role_names(m.roles) };
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | `{}` | {} | {} | {roles} | {} | {} |",
            m.opcode,
            m.mnemonic,
            m.direction,
            m.def.name,
            m.def.size() + HEADER_SIZE,
            m.state.as_deref().unwrap_or("-"),
            m.handler.as_deref().map(|h| format!("`{h}`")).unwrap_or_else(|| "-".into()),
            m.doc
        );
    }
    out.push_str("\n## Layouts\n");
    let header = structs.iter().find(|s| s.name == HEADER_STRUCT);
    for s in structs {
        layout(&mut out, &s.name, s, None);
    }
    for m in messages {
        layout(&mut out, &format!("{} `{}` ({})", m.def.name, m.mnemonic, m.opcode), &m.def, header);
    }
    out
}

fn layout(out: &mut String, title: &str, s: &StructDef, header: Option<&StructDef>) {
    let size = s.size() + header.map_or(0, StructDef::size);
    let _ = writeln!(
        out,
        "\n### {title}\n\n{} {size} bytes.\n\n| offset | size | field | type | description |\n|---:|---:|---|---|---|",
        s.doc
    );
    let mut off = 0;
    if let Some(h) = header {
        let _ = writeln!(out, "| 0 | {} | `hdr` | Header | common header |", h.size());
        off = h.size();
    }
    for f in &s.fields {
        let _ = writeln!(out, "| {off} | {} | `{}` | {} | {} |", f.ty.size(), f.name, f.ty.canonical(), f.doc);
        off += f.ty.size();
    }
    if s.pad > 0 {
        let _ = writeln!(out, "| {off} | {} | `reserved` | bytes[{}] | zero |", s.pad, s.pad);
    }
}

/// Embeds the server public key(s), the deployment key, the version and a build id.
///
/// Keys come from `keys/` when `make keys` made them; otherwise a throwaway
/// development set is generated once into $OUT_DIR with a loud warning.
fn keys(root: &Path, out: &Path, hash: &[u8; 32]) {
    let dir = root.join("keys");
    // Watch the directory, not the files: a watched file that does not exist
    // (the next key, or all of them with dev keys) would rerun this every build.
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let (pub_der, deploy, private_path, dev) =
        if dir.join("server_rsa.pub.der").exists() && dir.join("deployment.key").exists() {
            let pub_der = fs::read(dir.join("server_rsa.pub.der"))
                .unwrap_or_else(|e| fail(&format!("keys/server_rsa.pub.der: {e}")));
            let deploy =
                fs::read(dir.join("deployment.key")).unwrap_or_else(|e| fail(&format!("keys/deployment.key: {e}")));
            (pub_der, deploy, dir.join("server_rsa.pem"), false)
        } else {
            let (pub_der, deploy, path) = dev_keys(out);
            if std::env::var_os("SOTTO_QUIET_DEV_KEYS").is_none() {
                println!("cargo:warning=**************************************************************");
                println!("cargo:warning=sotto: keys/ has no keys: built with THROWAWAY DEVELOPMENT KEYS");
                println!("cargo:warning=sotto: ({}).", path.display());
                println!("cargo:warning=sotto: run `make keys && make` before handing out binaries.");
                println!("cargo:warning=**************************************************************");
            }
            (pub_der, deploy, path, true)
        };
    if deploy.len() != 32 {
        fail("keys/deployment.key must be exactly 32 bytes (run `make keys FORCE=1`)");
    }
    let next = fs::read(dir.join("server_rsa.next.pub.der")).ok();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let build_time: u64 = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    });
    let mut h = Sha256::new();
    h.update(version.as_bytes());
    h.update(hash);
    h.update(&pub_der);
    h.update(&deploy);
    h.update(build_time.to_be_bytes());
    let build_id: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);

    let mut rs = String::from("// @generated by build.rs — do not edit\n\n");
    let _ = writeln!(rs, "/// DER (SubjectPublicKeyInfo) of the server key this build trusts.\npub const SERVER_PUBLIC_DER: &[u8] = &{pub_der:?};");
    match next {
        Some(n) => {
            let _ = writeln!(rs, "/// The next server key, for rotation, if one was provided.\npub const NEXT_SERVER_PUBLIC_DER: Option<&[u8]> = Some(&{n:?});");
        }
        None => rs.push_str("/// The next server key, for rotation, if one was provided.\npub const NEXT_SERVER_PUBLIC_DER: Option<&[u8]> = None;\n"),
    }
    let _ = writeln!(rs, "/// Deployment key: keys the ClientHello MAC and salts the session keys.\npub const DEPLOYMENT_KEY: [u8; 32] = {deploy:?};");
    let _ = writeln!(rs, "/// Crate version.\npub const VERSION: &str = {version:?};");
    let _ = writeln!(rs, "/// Build id: SHA-256(version, table hash, keys, build time), first 16 bytes.\npub const BUILD_ID: [u8; 16] = {build_id:?};");
    let _ = writeln!(
        rs,
        "/// Build time, Unix seconds (SOURCE_DATE_EPOCH when set).\npub const BUILD_TIME: u64 = {build_time};"
    );
    let _ = writeln!(rs, "/// True when built with throwaway development keys.\npub const DEV_KEYS: bool = {dev};");
    let _ = writeln!(rs, "/// Path of the private key that matches SERVER_PUBLIC_DER at build time.\npub const BUILD_KEY_PATH: &str = {:?};", private_path.display().to_string());
    write(&out.join("keys.rs"), &rs);
}

/// Generates (once per $OUT_DIR) a throwaway RSA-2048 key and deployment key.
fn dev_keys(out: &Path) -> (Vec<u8>, Vec<u8>, PathBuf) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use std::os::unix::fs::PermissionsExt;

    let dir = out.join("dev-keys");
    let pem = dir.join("server_rsa.pem");
    let pubp = dir.join("server_rsa.pub.der");
    let dep = dir.join("deployment.key");
    if !(pem.exists() && pubp.exists() && dep.exists()) {
        fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        let mut rng = rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap_or_else(|e| fail(&format!("dev key generation: {e}")));
        let pem_text = key.to_pkcs8_pem(LineEnding::LF).unwrap_or_else(|e| fail(&format!("dev key encoding: {e}")));
        let pub_der =
            key.to_public_key().to_public_key_der().unwrap_or_else(|e| fail(&format!("dev key encoding: {e}")));
        let mut deploy = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut deploy);
        write_private(&pem, pem_text.as_bytes());
        write_private(&dep, &deploy);
        fs::write(&pubp, pub_der.as_bytes()).unwrap_or_else(|e| fail(&format!("{}: {e}", pubp.display())));
    }
    let pub_der = fs::read(&pubp).unwrap_or_else(|e| fail(&format!("{}: {e}", pubp.display())));
    let deploy = fs::read(&dep).unwrap_or_else(|e| fail(&format!("{}: {e}", dep.display())));
    (pub_der, deploy, pem)
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    f.write_all(bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
}
