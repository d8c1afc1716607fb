//! keepalived.conf's grammar: lines to a tree of keywords with their
//! arguments and blocks. A `{` opens a block for the keyword on the line
//! just before it; a `}` closes the innermost one. Which keywords take a
//! block, and what their arguments mean, is the mapping's business.

use super::{
    diag::{Pos, Report},
    lines::Line,
    words::{self, Ch, Word},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub keyword: Word,
    pub args: Vec<Word>,
    /// The whole line, for keywords whose arguments keepalived reads again
    /// with quotes and escapes (scripts).
    pub line: Vec<Ch>,
    pub block: Option<Block>,
}

impl Node {
    pub fn at(&self) -> Pos {
        self.keyword.at
    }

    pub fn name(&self) -> &str {
        &self.keyword.text
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Where its `{` is.
    pub open: Pos,
    pub nodes: Vec<Node>,
}

/// Builds the tree, reporting braces that do not match. Like keepalived, a
/// `{` that follows no keyword is ignored (its contents then belong to the
/// enclosing block) and a `}` too many is ignored.
pub(crate) fn build(lines: Vec<Line>, report: &mut Report) -> Vec<Node> {
    // The blocks being filled, innermost last; the outermost is the file.
    let mut stack: Vec<(Option<Pos>, Vec<Node>)> = vec![(None, Vec::new())];
    // Whether the previous line was a keyword that may take a block.
    let mut may_open = false;
    for line in lines {
        let at = line.at();
        let text = words::text(&line.text);
        match text.as_str() {
            "{" => {
                let parent_has_block = stack.last().and_then(|(_, n)| n.last()).is_some_and(|n| n.block.is_some());
                if may_open && !parent_has_block {
                    stack.push((Some(at), Vec::new()));
                } else {
                    report.error(
                        at,
                        "`{` follows no keyword: ignored, as keepalived does, so what follows belongs to the enclosing block",
                    );
                }
                may_open = false;
            }
            "}" => {
                may_open = false;
                if stack.len() == 1 {
                    report.error(at, "`}` closes no block: ignored, as keepalived does");
                    continue;
                }
                close(&mut stack);
            }
            _ => match words::plain(&line.text) {
                Ok(mut w) if !w.is_empty() => {
                    let keyword = w.remove(0);
                    let node = Node { keyword, args: w, line: line.text.clone(), block: None };
                    if let Some((_, nodes)) = stack.last_mut() {
                        nodes.push(node);
                    }
                    may_open = true;
                }
                Ok(_) => may_open = false,
                Err((at, message)) => {
                    report.error(at, format!("{message}: line ignored"));
                    may_open = false;
                }
            },
        }
    }
    while stack.len() > 1 {
        if let Some((Some(open), _)) = stack.last() {
            report.error(*open, "this `{` is never closed: the block ends with the file");
        }
        close(&mut stack);
    }
    stack.pop().map(|(_, nodes)| nodes).unwrap_or_default()
}

fn close(stack: &mut Vec<(Option<Pos>, Vec<Node>)>) {
    let Some((Some(open), nodes)) = stack.pop() else { return };
    if let Some(parent) = stack.last_mut().and_then(|(_, n)| n.last_mut()) {
        parent.block = Some(Block { open, nodes });
    }
}
