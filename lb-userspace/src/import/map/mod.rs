//! From keepalived's tree to lb.toml's tables: what keepalived 2.2.7 does
//! with each keyword, carried over where lb can do the same, and said
//! (with the keyword's place) where it cannot.
//!
//! Where keepalived 2.2.7 reads a file differently from how it looks (a
//! block on one line, `nopreempt` with `state MASTER`, `nb_get_retry` in a
//! `TCP_CHECK`), the import follows keepalived, so that a director moved
//! to lb behaves as it did, and warns with what to write instead.

mod checker;
mod command;
mod global;
mod known;
mod lvs;
mod values;
mod vrrp;

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    diag::{Pos, Report},
    emit::{Document, Table, Value},
    host::Host,
    probe,
    tree::Node,
};

/// The mapping's state: where to report, the machine, what was left out.
pub(crate) struct Cx<'a> {
    pub report: &'a mut Report,
    pub host: &'a dyn Host,
    /// One line per item not imported, for the end of the generated file.
    pub left_out: Vec<String>,
    /// Whether any script (check, track or notify) was imported.
    pub scripts_used: bool,
}

/// What the caller decides.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The interface that receives a virtual server's traffic when no
    /// `vrrp_instance` holds its address.
    pub interface: Option<String>,
}

impl Cx<'_> {
    /// Says where `node` was not imported, in the report (an error) and at
    /// the end of the generated file.
    pub fn refuse(&mut self, node: &Node, why: impl Into<String>) {
        let why = why.into();
        self.report.error(node.at(), why.clone());
        let head: Vec<&str> =
            std::iter::once(node.name()).chain(node.args.iter().map(|a| a.text.as_str()).take(3)).collect();
        let at = node.at();
        self.left_out.push(format!("{} ({}:{}): {why}", head.join(" "), self.report.path(at.file).display(), at.line));
    }

    /// Arguments past `max` are ignored, as keepalived ignores them. One of
    /// them being a keyword means a block was written on one line, which
    /// keepalived 2.2.7 reads as one keyword with many arguments.
    pub fn extra_args(&mut self, node: &Node, max: usize) {
        let Some(first) = node.args.get(max) else { return };
        let extra: Vec<&str> = node.args[max..].iter().map(|w| w.text.as_str()).collect();
        let keyword = node.args[max..].iter().find(|w| is_keyword(&w.text));
        let message = match keyword {
            Some(k) => format!(
                "`{}` is read as an argument of `{}`, not as a keyword: keepalived 2.2.7 ends lines only at `{{` and `}}`, \
                 so several keywords on one line (a block written on one line) are one keyword with many arguments; \
                 `{}` ignored, as keepalived does: write each keyword on its own line",
                k.text,
                node.name(),
                extra.join(" ")
            ),
            None => format!("`{}`: extra arguments `{}` ignored, as keepalived does", node.name(), extra.join(" ")),
        };
        self.report.warn(first.at, message);
    }

    /// The block of a keyword that takes one (none: an error, and nothing).
    pub fn block<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        match &node.block {
            Some(b) => &b.nodes,
            None => {
                self.report.error(node.at(), format!("`{}` needs a block `{{ ... }}`: not imported", node.name()));
                &[]
            }
        }
    }

    /// A keyword that takes no block but has one: keepalived ignores the
    /// `{` and reads what follows as part of the enclosing block, which is
    /// surely not what was meant.
    pub fn no_block(&mut self, node: &Node) {
        if let Some(b) = &node.block {
            self.report.error(
                b.open,
                format!(
                    "`{}` takes no block: keepalived ignores this `{{` and reads what follows as part of the enclosing \
                     block; not imported (is a block written on one line?)",
                    node.name()
                ),
            );
        }
    }

    /// A keyword lb has nothing for; `why` says what lb does instead.
    pub fn ignored(&mut self, node: &Node, why: &str) {
        self.report.warn(node.at(), format!("`{}` is not imported: {why}", node.name()));
    }

    /// A keyword the import has no mapping for in `block`: one keepalived
    /// 2.2.7 does not know (its config test refuses the whole file, and so
    /// does the import), or one lb has nothing for (a warning).
    pub fn unknown(&mut self, node: &Node, block: &str) {
        let root = block == "the top level";
        if !known::knows(node.name(), root) {
            let known_elsewhere = root && known::knows(node.name(), false);
            self.report.error(
                node.at(),
                format!(
                    "keepalived 2.2.7 does not know `{}` {}: its config test refuses the file; not imported",
                    node.name(),
                    if known_elsewhere { format!("at {block}, only inside a block") } else { format!("in {block}") }
                ),
            );
            return;
        }
        self.report.warn(node.at(), format!("`{}` in {block} is not imported: lb has no equivalent", node.name()));
    }
}

/// Every keyword the import reads anywhere: an argument that is one of
/// these was meant as a keyword.
fn is_keyword(word: &str) -> bool {
    global::KEYWORDS.contains(&word)
        || vrrp::KEYWORDS.contains(&word)
        || lvs::KEYWORDS.contains(&word)
        || checker::KEYWORDS.contains(&word)
}

/// The import of a parsed keepalived.conf.
pub(crate) fn map(nodes: &[Node], settings: &Settings, host: &dyn Host, report: &mut Report) -> Document {
    let mut cx = Cx { report, host, left_out: Vec::new(), scripts_used: false };
    let mut defs = global::GlobalDefs::default();
    let mut scripts: BTreeMap<String, global::ScriptDef> = BTreeMap::new();
    for node in nodes {
        match node.name() {
            "global_defs" => global::global_defs(&mut cx, node, &mut defs),
            "vrrp_script" => {
                if let Some(s) = global::vrrp_script(&mut cx, node) {
                    if scripts.contains_key(&s.name) {
                        cx.report
                            .warn(node.at(), format!("vrrp_script {} defined again: the later one is used", s.name));
                    }
                    scripts.insert(s.name.clone(), s);
                }
            }
            _ => {}
        }
    }

    let mut instances: Vec<vrrp::Instance> = Vec::new();
    for node in nodes.iter().filter(|n| n.name() == "vrrp_instance") {
        if let Some(i) = vrrp::instance(&mut cx, node, &defs, &scripts, &instances) {
            instances.push(i);
        }
    }
    let mut groups = Vec::new();
    for node in nodes.iter().filter(|n| n.name() == "vrrp_sync_group") {
        if let Some(g) = vrrp::sync_group(&mut cx, node, &instances, &groups) {
            groups.push(g);
        }
    }
    let mut interfaces: BTreeMap<IpAddr, String> = BTreeMap::new();
    for i in &instances {
        for (ip, dev) in &i.addresses {
            interfaces.entry(*ip).or_insert_with(|| dev.clone());
        }
    }
    let lvs_cx = lvs::Context { interfaces: &interfaces, interface: settings.interface.as_deref() };
    let mut server_groups: Vec<lvs::Group> = Vec::new();
    for node in nodes.iter().filter(|n| n.name() == "virtual_server_group") {
        if let Some(g) = lvs::group(&mut cx, node, &server_groups) {
            server_groups.push(g);
        }
    }
    let mut vips: Vec<lvs::VirtualServer> = Vec::new();
    for node in nodes {
        match node.name() {
            "global_defs" | "vrrp_script" | "vrrp_instance" | "vrrp_sync_group" => {}
            "virtual_server" => {
                let imported = lvs::virtual_server(&mut cx, node, &lvs_cx, &server_groups, &vips);
                vips.extend(imported);
            }
            "virtual_server_group" => {}
            "static_ipaddress" | "static_routes" | "static_rules" => cx.ignored(
                node,
                "lb manages only the addresses and routes of its VRRP instances: keep these in the system's network configuration",
            ),
            "linkbeat_interfaces" | "track_file" | "vrrp_track_file" | "track_process" | "vrrp_track_process"
            | "bfd_instance" | "garp_group" | "vrrp_track_bfd" => {
                cx.ignored(node, "lb tracks interfaces, scripts and its own fast path only")
            }
            "include" | "includer" | "includem" | "includew" | "includeb" | "includea" => {
                cx.report.error(node.at(), "include takes exactly one file pattern: not read");
            }
            _ => cx.unknown(node, "the top level"),
        }
    }

    let mut global = Table::new("global", false);
    if let Some((user, note)) = global::script_user(&mut cx, &defs) {
        global.set_noted("script_user", Value::str(user), note);
    }
    if vips.len() > 16 {
        global.set("max_vips", Value::Int(vips.len().min(512) as i64));
    }
    let probe_global = global.clone();

    let mut doc = Document { header: header(&defs), ..Document::default() };
    if !global.fields.is_empty() {
        doc.tables.push(global);
    }
    for vs in vips {
        match probe::check(&[&probe_global, &vs.table]) {
            Ok(()) => doc.tables.push(vs.table),
            Err(problems) => refuse_all(&mut cx, vs.at, &vs.title, "virtual_server", &problems),
        }
    }
    let mut accepted: Vec<vrrp::Instance> = Vec::new();
    for i in instances {
        match probe::check(&[&probe_global, &i.table]) {
            Ok(()) => accepted.push(i),
            Err(problems) => {
                refuse_all(&mut cx, i.at, &format!("vrrp_instance {}", i.name), "vrrp_instance", &problems)
            }
        }
    }
    let mut group_tables = Vec::new();
    for group in groups {
        let mut tables = vec![&probe_global];
        tables.extend(accepted.iter().filter(|i| group.members.contains(&i.name)).map(|i| &i.table));
        tables.push(&group.table);
        match probe::check(&tables) {
            Ok(()) => group_tables.push(group.table),
            Err(problems) => {
                refuse_all(&mut cx, group.at, &format!("vrrp_sync_group {}", group.name), "vrrp_sync_group", &problems)
            }
        }
    }
    doc.tables.extend(accepted.into_iter().map(|i| i.table));
    doc.tables.extend(group_tables);
    doc.left_out = cx.left_out;
    doc
}

fn refuse_all(cx: &mut Cx<'_>, at: Pos, title: &str, what: &str, problems: &[String]) {
    for p in problems {
        cx.report.error(at, format!("{what}: lb refuses the imported result: {p}: not imported"));
    }
    cx.left_out.push(format!(
        "{title} ({}:{}): lb refuses the imported result: {}",
        cx.report.path(at.file).display(),
        at.line,
        problems.join("; ")
    ));
}

fn header(defs: &global::GlobalDefs) -> Vec<String> {
    let mut h = vec![
        "lb configuration imported from keepalived.conf by `lb import`.".to_owned(),
        "Review it, then check it on the director: lb check -c lb.toml".to_owned(),
    ];
    if let Some(id) = &defs.router_id {
        h.push(format!("keepalived's router_id was {id} (lb has none: it only named the machine in e-mail and SNMP)."));
    }
    h
}
