use std::path::Path;

use super::*;
use crate::import::{host::Memory, tree};

fn read_all(files: &[(&str, &str)], id: &str) -> (Vec<String>, Report) {
    let host = Memory::with(files);
    let mut report = Report::default();
    let lines = read(Path::new(files[0].0), id, &host, &mut report).unwrap();
    (lines.iter().map(|l| words::text(&l.text)).collect(), report)
}

fn lines_of(text: &str) -> Vec<String> {
    let (lines, report) = read_all(&[("/etc/keepalived/keepalived.conf", text)], "lb1");
    assert!(report.messages().is_empty(), "{:?}", report.messages());
    lines
}

#[test]
fn comments_end_lines_outside_double_quotes() {
    assert_eq!(
        lines_of("a 1 # one\n! whole line\nb \"x # y\" ! two\nc \\#3 \\!4\n   \n\td 'e # f'"),
        ["a 1", "b \"x # y\"", "c #3 !4", "d 'e"]
    );
}

#[test]
fn braces_end_lines_so_one_line_blocks_are_read_as_keepalived_reads_them() {
    assert_eq!(
        lines_of("authentication { auth_type PASS auth_pass 1111 }\nx{y}z\n\"{\" {"),
        ["authentication", "{", "auth_type PASS auth_pass 1111", "}", "x", "{", "y", "}", "z", "\"{\"", "{"]
    );
}

#[test]
fn positions_are_those_of_the_written_characters() {
    let (_, _) = read_all(&[("/k.conf", "")], "x");
    let host = Memory::with(&[("/k.conf", "a\n  b { c }\n")]);
    let mut report = Report::default();
    let lines = read(Path::new("/k.conf"), "x", &host, &mut report).unwrap();
    let at: Vec<(u32, u32)> = lines.iter().map(|l| (l.at().line, l.at().column)).collect();
    assert_eq!(at, [(1, 1), (2, 3), (2, 5), (2, 7), (2, 9)]);
    assert_eq!(report.path(lines[1].at().file), Path::new("/k.conf"));
}

#[test]
fn conditionals_keep_lines_for_their_config_id() {
    let text = "@lb1 a\n@lb2 b\n@^lb1 c\n@^lb2 d\n@lb1\n@lb1    e f";
    assert_eq!(lines_of(text), ["a", "d", "e f"]);
}

#[test]
fn definitions_are_replaced_where_used() {
    let text = "$IP=10.0.0.1\n$PORT = 80\nreal_server $IP $PORT\nx ${IP}/24 $IPX $\n$IF=@lb1\n$IF y";
    assert_eq!(lines_of(text), ["real_server 10.0.0.1 80", "x 10.0.0.1/24 $IPX $", "y"]);
    let (lines, report) = read_all(&[("/k.conf", "a ${NOPE} b")], "x");
    assert_eq!(lines, ["a $", "{", "NOPE", "}", "b"]);
    assert_eq!(
        report.messages(),
        [
            "/k.conf:1:3: warning: ${NOPE} is not defined: left as written, as keepalived does, and its `{` and `}` then end lines"
        ]
    );
}

#[test]
fn definitions_are_replaced_when_used_not_when_defined() {
    let text = "$BASE=10.2.${SUB}\n$SUB=0\n${BASE}.100/32\n$SUB=10\n${BASE}.100/32";
    assert_eq!(lines_of(text), ["10.2.0.100/32", "10.2.10.100/32"]);
}

#[test]
fn multi_line_definitions_make_several_lines() {
    let text =
        "$INST= \\\n  vrrp_instance VI_${N} { \\\n    virtual_router_id ${N} \\\n  }\n$N=1\n$INST\n$N=2\n${INST}\n";
    assert_eq!(
        lines_of(text),
        ["vrrp_instance VI_1", "{", "virtual_router_id 1", "}", "vrrp_instance VI_2", "{", "virtual_router_id 2", "}"]
    );
}

#[test]
fn predefined_definitions() {
    let (lines, report) = read_all(&[("/etc/ka/k.conf", "a ${_PWD} ${_INSTANCE} x${_HASH}y${_BANG}")], "dir1");
    assert!(report.messages().is_empty());
    assert_eq!(lines, ["a /etc/ka dir1 x#y!"]);
    let (lines, report) = read_all(&[("/k.conf", "weight ${_RANDOM 1 10}")], "x");
    assert_eq!(lines, ["weight $", "{", "_RANDOM 1 10", "}"]);
    assert_eq!(
        report.messages(),
        [
            "/k.conf:1:8: error: ${_RANDOM} gives a different value on every read: write the value itself (left as written)"
        ]
    );
}

#[test]
fn seq_and_lst_repeat_the_rest_of_their_line() {
    assert_eq!(lines_of("~SEQ(N, 0, 2) ip 10.0.${N}.1"), ["ip 10.0.0.1", "ip 10.0.1.1", "ip 10.0.2.1"]);
    assert_eq!(lines_of("~SEQ(N, 3) n$N"), ["n1", "n2", "n3"]);
    assert_eq!(lines_of("~SEQ(N, 5, -2, 1) n$N"), ["n5", "n3", "n1"]);
    assert_eq!(lines_of("~SEQx(N, 0x90, 0x10, 0xb0) fe80::${N}:1"), ["fe80::90:1", "fe80::a0:1", "fe80::b0:1"]);
    assert_eq!(lines_of("~LST(A, x, y) v$A"), ["vx", "vy"]);
    assert_eq!(lines_of("~LST({A, B}, {1,2},{3,4}) ${A}.${B}"), ["1.2", "3.4"]);
    assert_eq!(lines_of("~LST(A, 1, 2) ~SEQ(B, 7, 8) ${A}${B}"), ["17", "18", "27", "28"]);
    assert_eq!(lines_of("$END=2\n~SEQ(N, 1, $END) n$N"), ["n1", "n2"]);
}

#[test]
fn bad_repeats_are_refused_at_their_place() {
    let (lines, report) = read_all(&[("/k.conf", "a\n  ~SEQ(N, 1, -1, 5) x\n~LST({A,B}, {1}) y\n~FOO z")], "x");
    assert_eq!(lines, ["a"]);
    assert_eq!(
        report.messages(),
        [
            "/k.conf:2:3: error: ~SEQ: the step -1 never gets from 1 to 5: line dropped",
            "/k.conf:3:1: error: ~LST: 1 values where 2 variables take them: [\"1\"]: line dropped",
            "/k.conf:4:1: error: unknown directive: keepalived knows ~SEQ, ~SEQx and ~LST: line dropped"
        ]
    );
}

#[test]
fn definitions_that_use_themselves_stop() {
    let (lines, report) = read_all(&[("/k.conf", "$A=x $A\n$A")], "x");
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        report.messages(),
        ["/k.conf:2:1: error: definitions or ~SEQ/~LST refer to each other without end: line dropped"]
    );
}

#[test]
fn open_quotes_and_stray_continuations_are_reported() {
    let (lines, report) = read_all(&[("/k.conf", "a \"b\nc \\")], "x");
    assert_eq!(lines, ["a \"b", "c"]);
    assert_eq!(
        report.messages(),
        [
            "/k.conf:1:3: error: this \" is not closed on its line (keepalived: \"Unterminated quote\")",
            "/k.conf:2:1: warning: a `\\` at the end of a line continues only a $NAME= definition: ignored, as keepalived does"
        ]
    );
}

#[test]
fn includes_read_globs_and_braces_relative_to_the_including_file() {
    let files = [
        ("/etc/keepalived/keepalived.conf", "top\ninclude conf.d/*.conf\ninclude /etc/other/{x,y}.conf\nend"),
        ("/etc/keepalived/conf.d/b.conf", "b ${_PWD}\ninclude ../sub/c.conf"),
        ("/etc/keepalived/conf.d/a.conf", "a"),
        ("/etc/keepalived/sub/c.conf", "c"),
        ("/etc/other/x.conf", "x"),
        ("/etc/other/y.conf", "y"),
    ];
    let (lines, report) = read_all(&files, "x");
    assert!(report.messages().is_empty(), "{:?}", report.messages());
    assert_eq!(lines, ["top", "a", "b /etc/keepalived/conf.d", "c", "x", "y", "end"]);
}

#[test]
fn includes_that_match_nothing_or_loop_are_reported() {
    let files = [("/k.conf", "include none*.conf\ninclude k.conf\nz")];
    let (lines, report) = read_all(&files, "x");
    assert_eq!(lines, ["z"]);
    assert_eq!(
        report.messages(),
        [
            "/k.conf:1:9: warning: include: no file matches /none*.conf",
            "/k.conf:2:9: error: /k.conf includes itself: not read again"
        ]
    );
}

#[test]
fn brace_expansion() {
    assert_eq!(expand_braces("a{b,c{d,e}}f"), ["abf", "acdf", "acef"]);
    assert_eq!(expand_braces("{,x}y"), ["y", "xy"]);
    assert_eq!(expand_braces("plain"), ["plain"]);
}

fn tree_of(text: &str) -> (Vec<tree::Node>, Vec<String>) {
    let host = Memory::with(&[("/k.conf", text)]);
    let mut report = Report::default();
    let lines = read(Path::new("/k.conf"), "x", &host, &mut report).unwrap();
    let nodes = tree::build(lines, &mut report);
    (nodes, report.messages())
}

fn shape(nodes: &[tree::Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let args: Vec<&str> = n.args.iter().map(|a| a.text.as_str()).collect();
            let head = std::iter::once(n.name()).chain(args).collect::<Vec<_>>().join(" ");
            match &n.block {
                Some(b) => format!("{head} {{{}}}", shape(&b.nodes)),
                None => head,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn the_tree_has_keywords_arguments_and_blocks() {
    let (nodes, messages) =
        tree_of("global_defs {\n router_id a\n}\nvrrp_instance VI_1\n{\n  unicast_peer { 10.0.0.2\n10.0.0.3 }\n}\n");
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(shape(&nodes), "global_defs {router_id a}; vrrp_instance VI_1 {unicast_peer {10.0.0.2; 10.0.0.3}}");
    assert_eq!((nodes[1].at().line, nodes[1].at().column), (4, 1));
    assert_eq!(nodes[1].block.as_ref().map(|b| (b.open.line, b.open.column)), Some((5, 1)));
}

#[test]
fn unbalanced_braces_are_reported_where_they_are() {
    let (nodes, messages) = tree_of("a {\n b {\n}\n}\n}\n{\nc\n d {\n");
    assert_eq!(shape(&nodes), "a {b {}}; c; d {}");
    assert_eq!(
        messages,
        [
            "/k.conf:5:1: error: `}` closes no block: ignored, as keepalived does",
            "/k.conf:6:1: error: `{` follows no keyword: ignored, as keepalived does, so what follows belongs to the enclosing block",
            "/k.conf:8:4: error: this `{` is never closed: the block ends with the file"
        ]
    );
}
