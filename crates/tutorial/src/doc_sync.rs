//! Keeps `docs/tutorial.md` true: every code block preceded by an include comment must
//! equal the region of the source it names, every ```` ```rust ```` block must have one,
//! and the line counts the tutorial states must be the real ones.
//!
//! An include comment is `<!-- include: PATH -->` or `<!-- include: PATH#SELECTOR -->`
//! on the line before a fenced block, `PATH` relative to the workspace root:
//! - no selector: the whole file;
//! - `#name`: the lines between `ANCHOR: name` and `ANCHOR_END: name` comment lines (the
//!   mdBook convention; nested anchor lines are left out);
//! - `#item=HEADER` in a Rust file: the item whose declaration starts with `HEADER` once
//!   `pub ` is dropped (`struct Formation`, `fn registry`, `impl Message for Ack`), with
//!   its doc comments and attributes, down to its closing brace;
//! - `#item=NAME` in a TOML file: the `[[item]]` named `NAME`, with the comment lines
//!   just above it.
//!
//! Regions and blocks are compared with their common indentation, trailing spaces and
//! leading and trailing blank lines removed. [`bless`] rewrites the blocks (and the line
//! counts) from the sources: `TUTORIAL_BLESS=1 cargo test -p tutorial`.

use std::fmt::Write as _;
use std::path::Path;

/// The tutorial, relative to the workspace root.
pub const TUTORIAL: &str = "docs/tutorial.md";

/// The minimal Rust `FileOperation` whose lines the tutorial counts.
pub const RUST_FILE_OPERATION: &str = "crates/tutorial/src/file_operation.rs";

/// The reconstruction of the Python original it is compared with.
pub const PYTHON_FILE_OPERATION: &str = "crates/tutorial/python/file_operation.py";

/// The phrases after which the tutorial states the two line counts: "**58** lines of
/// Rust", "**27** lines of Python".
pub const RUST_LOC_PHRASE: &str = "lines of Rust";
pub const PYTHON_LOC_PHRASE: &str = "lines of Python";

/// One included code block of the markdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// `PATH` or `PATH#SELECTOR`, as written.
    pub spec: String,
    /// 1-based line of the include comment.
    pub comment_line: usize,
    /// 0-based index of the first body line and one past the last (the fences excluded).
    pub body: std::ops::Range<usize>,
}

/// The included blocks of `markdown`, or the problems of its structure (a ```` ```rust ````
/// block without include comment, an include comment without block, an unclosed fence).
pub fn parse(markdown: &str) -> (Vec<Block>, Vec<String>) {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(spec) = include_spec(line) {
            if let Some((_, at)) = &pending {
                problems.push(format!(
                    "{TUTORIAL}:{at}: include comment not followed by a code block"
                ));
            }
            pending = Some((spec.to_string(), i + 1));
            i += 1;
            continue;
        }
        if let Some(lang) = line.strip_prefix("```") {
            let lang = lang.trim().to_string();
            let start = i + 1;
            let Some(len) = lines[start..].iter().position(|l| l.trim() == "```") else {
                problems.push(format!("{TUTORIAL}:{}: code block never closed", i + 1));
                break;
            };
            let end = start + len;
            match pending.take() {
                Some((spec, comment_line)) => blocks.push(Block {
                    spec,
                    comment_line,
                    body: start..end,
                }),
                None if lang == "rust" => problems.push(format!(
                    "{TUTORIAL}:{}: ```rust block without an `<!-- include: PATH#ANCHOR -->` \
                     comment: its code must come from a compiled, tested file",
                    i + 1
                )),
                None => {}
            }
            i = end + 1;
            continue;
        }
        if !line.is_empty() {
            if let Some((_, at)) = pending.take() {
                problems.push(format!(
                    "{TUTORIAL}:{at}: include comment not followed by a code block"
                ));
            }
        }
        i += 1;
    }
    if let Some((_, at)) = pending {
        problems.push(format!(
            "{TUTORIAL}:{at}: include comment not followed by a code block"
        ));
    }
    (blocks, problems)
}

fn include_spec(line: &str) -> Option<&str> {
    line.strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim()
        .strip_prefix("include:")
        .map(str::trim)
}

/// The normalized text `spec` names, read under `root`.
pub fn extract(root: &Path, spec: &str) -> Result<String, String> {
    let (path, selector) = match spec.split_once('#') {
        Some((p, s)) => (p, Some(s)),
        None => (spec, None),
    };
    let text = std::fs::read_to_string(root.join(path))
        .map_err(|e| format!("{spec}: cannot read {path}: {e}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let region: Vec<&str> = match selector {
        None => lines,
        Some(s) => match s.strip_prefix("item=") {
            Some(header) if path.ends_with(".toml") => toml_item(&lines, header)
                .ok_or_else(|| format!("{spec}: no [[item]] named '{header}' in {path}"))?,
            Some(header) => rust_item(&lines, header)
                .ok_or_else(|| format!("{spec}: no item '{header}' in {path}"))?,
            None => anchor(&lines, s).map_err(|e| format!("{spec}: {e} in {path}"))?,
        },
    };
    let kept: Vec<&str> = region.into_iter().filter(|l| !is_anchor(l)).collect();
    Ok(normalize(&kept))
}

fn is_anchor(line: &str) -> bool {
    let t = line.trim().trim_start_matches(['/', '#']).trim_start();
    t.starts_with("ANCHOR:") || t.starts_with("ANCHOR_END:")
}

/// The name of an `ANCHOR:` / `ANCHOR_END:` comment line.
fn anchor_name<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let t = line.trim().trim_start_matches(['/', '#']).trim_start();
    t.strip_prefix(tag).map(str::trim)
}

fn anchor<'a>(lines: &[&'a str], name: &str) -> Result<Vec<&'a str>, String> {
    let start = lines
        .iter()
        .position(|l| anchor_name(l, "ANCHOR:") == Some(name))
        .ok_or_else(|| format!("no `ANCHOR: {name}` line"))?;
    let len = lines[start + 1..]
        .iter()
        .position(|l| anchor_name(l, "ANCHOR_END:") == Some(name))
        .ok_or_else(|| format!("no `ANCHOR_END: {name}` line after `ANCHOR: {name}`"))?;
    Ok(lines[start + 1..start + 1 + len].to_vec())
}

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

fn rust_item<'a>(lines: &[&'a str], header: &str) -> Option<Vec<&'a str>> {
    let at = lines.iter().position(|l| {
        let t = l.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        t.strip_prefix(header)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })?;
    let mut start = at;
    while start > 0 {
        let t = lines[start - 1].trim_start();
        if t.starts_with("///") || t.starts_with("#[") {
            start -= 1;
        } else {
            break;
        }
    }
    if lines[at].trim_end().ends_with(';') {
        return Some(lines[start..=at].to_vec());
    }
    let indent = indent_of(lines[at]);
    let end = lines[at + 1..]
        .iter()
        .position(|l| indent_of(l) == indent && l[indent.len()..].starts_with('}'))?;
    Some(lines[start..=at + 1 + end].to_vec())
}

fn toml_item<'a>(lines: &[&'a str], name: &str) -> Option<Vec<&'a str>> {
    let heads: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == "[[item]]")
        .collect();
    let wanted = format!("\"{name}\"");
    for (n, &head) in heads.iter().enumerate() {
        let next = heads.get(n + 1).copied().unwrap_or(lines.len());
        let named = lines[head..next].iter().any(|l| {
            l.split_once('=').is_some_and(|(k, v)| {
                k.trim() == "name" && v.split('#').next().unwrap_or("").trim() == wanted
            })
        });
        if !named {
            continue;
        }
        let mut start = head;
        while start > 0 && lines[start - 1].trim_start().starts_with('#') {
            start -= 1;
        }
        let mut end = next;
        while end > head && {
            let t = lines[end - 1].trim();
            t.is_empty() || t.starts_with('#')
        } {
            end -= 1;
        }
        return Some(lines[start..end].to_vec());
    }
    None
}

/// Common indentation, trailing spaces and outer blank lines removed.
pub fn normalize(lines: &[&str]) -> String {
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return String::new();
    };
    let lines = &lines[first..=last];
    let indent = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        out.push_str(l.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Unchanged lines shown around each change by [`diff`].
const DIFF_CONTEXT: usize = 3;

/// A line diff from `old` to `new`: ` ` kept, `-` only in `old`, `+` only in `new`;
/// unchanged lines farther than three lines from a change are folded into `...`.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(format!("- {}", a[i]));
            i += 1;
        } else {
            lines.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&k| !lines[k].starts_with("  "))
        .collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= DIFF_CONTEXT);
    let mut out = String::new();
    let mut folded = false;
    for (k, line) in lines.iter().enumerate() {
        if near(k) {
            let _ = writeln!(out, "{line}");
            folded = false;
        } else if !folded {
            out.push_str("  ...\n");
            folded = true;
        }
    }
    out
}

/// Every difference between the tutorial's blocks and their sources, each naming the
/// block and showing the diff; and every structural problem. (The line counts are
/// [`check_line_counts`].)
pub fn check(root: &Path, markdown: &str) -> Vec<String> {
    let (blocks, mut problems) = parse(markdown);
    let lines: Vec<&str> = markdown.lines().collect();
    for block in &blocks {
        let source = match extract(root, &block.spec) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{TUTORIAL}:{}: {e}", block.comment_line));
                continue;
            }
        };
        let shown = normalize(&lines[block.body.clone()]);
        if shown != source {
            problems.push(format!(
                "{TUTORIAL}:{}: the block of `{}` differs from its source \
                 (- in the tutorial, + in the source):\n{}",
                block.comment_line,
                block.spec,
                diff(&shown, &source)
            ));
        }
    }
    problems
}

/// The markdown with every included block and both line counts taken from the sources.
pub fn bless(root: &Path, markdown: &str) -> Result<String, Vec<String>> {
    let (blocks, problems) = parse(markdown);
    if !problems.is_empty() {
        return Err(problems);
    }
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    let mut next = 0;
    for block in &blocks {
        out.extend(lines[next..block.body.start].iter().map(|l| l.to_string()));
        match extract(root, &block.spec) {
            Ok(source) => out.extend(source.lines().map(str::to_string)),
            Err(e) => {
                errors.push(format!("{TUTORIAL}:{}: {e}", block.comment_line));
                out.extend(lines[block.body.clone()].iter().map(|l| l.to_string()));
            }
        }
        next = block.body.end;
    }
    out.extend(lines[next..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if markdown.ends_with('\n') {
        text.push('\n');
    }
    let (rust, python) = measured_line_counts(root).map_err(|e| vec![e])?;
    for (phrase, count) in [(RUST_LOC_PHRASE, rust), (PYTHON_LOC_PHRASE, python)] {
        match stated_count(&text, phrase) {
            Ok((_, range)) => text.replace_range(range, &count.to_string()),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(text)
    } else {
        Err(errors)
    }
}

/// Non-blank lines that are not `//` comments, up to the `#[cfg(test)]` module.
pub fn rust_code_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .take_while(|l| *l != "#[cfg(test)]")
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

/// Non-blank lines that are not `#` comments.
pub fn python_code_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The line counts of the Rust and the Python `FileOperation`.
pub fn measured_line_counts(root: &Path) -> Result<(usize, usize), String> {
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
    };
    Ok((
        rust_code_lines(&read(RUST_FILE_OPERATION)?),
        python_code_lines(&read(PYTHON_FILE_OPERATION)?),
    ))
}

/// The number written just before the only occurrence of `phrase` (bold or not), and
/// its byte range.
pub fn stated_count(
    markdown: &str,
    phrase: &str,
) -> Result<(usize, std::ops::Range<usize>), String> {
    let mut found = markdown.match_indices(phrase).map(|(at, _)| at);
    let (Some(at), None) = (found.next(), found.next()) else {
        return Err(format!(
            "{TUTORIAL} must say \"N {phrase}\" exactly once (the measured line count)"
        ));
    };
    let before = markdown[..at].trim_end().trim_end_matches('*');
    let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let range = before.len() - digits..before.len();
    markdown[range.clone()]
        .parse()
        .map(|n| (n, range))
        .map_err(|_| format!("{TUTORIAL}: no number before \"{phrase}\""))
}

/// Whether the counts the tutorial states are the measured ones.
pub fn check_line_counts(root: &Path, markdown: &str) -> Vec<String> {
    let (rust, python) = match measured_line_counts(root) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for (phrase, measured, file) in [
        (RUST_LOC_PHRASE, rust, RUST_FILE_OPERATION),
        (PYTHON_LOC_PHRASE, python, PYTHON_FILE_OPERATION),
    ] {
        match stated_count(markdown, phrase) {
            Ok((stated, _)) if stated == measured => {}
            Ok((stated, _)) => problems.push(format!(
                "{TUTORIAL} says {stated} {phrase}, {file} has {measured} (non-blank, \
                 non-comment)"
            )),
            Err(e) => problems.push(e),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const SOURCE: &str = "fn a() {}\n\
                          // ANCHOR: outer\n\
                          mod m {\n    \
                              // ANCHOR: inner\n    \
                              fn b() {}  \n    \
                              // ANCHOR_END: inner\n\
                          }\n\
                          // ANCHOR_END: outer\n";

    #[test]
    fn anchors_nest_and_their_lines_are_left_out() {
        let dir = root_with(&[("src/x.rs", SOURCE)]);
        assert_eq!(
            extract(dir.path(), "src/x.rs#outer").unwrap(),
            "mod m {\n    fn b() {}\n}\n"
        );
        assert_eq!(
            extract(dir.path(), "src/x.rs#inner").unwrap(),
            "fn b() {}\n"
        );
        let err = extract(dir.path(), "src/x.rs#nope").unwrap_err();
        assert!(err.contains("ANCHOR: nope"), "{err}");
    }

    #[test]
    fn rust_and_toml_items_are_found_by_name() {
        let rust = "/// Doc.\n#[derive(Debug)]\npub struct FormationRequest {\n    x: i64,\n}\n\
                    pub struct Formation {\n    y: i64,\n}\nimpl T for Formation {\n    \
                    fn f(&self) -> String {\n        format!(\"{}\", 1)\n    }\n}\n";
        let toml = "[production]\nname = \"P\"\n\n[[item]]\nname = \"A\"\nclass = \"a\"\n\n\
                    # About B.\n[[item]]\nname = \"B\"   # the name\n[item.settings]\nk = 1\n\n\
                    # About C.\n[[item]]\nname = \"C\"\n";
        let dir = root_with(&[("l.rs", rust), ("p.toml", toml)]);
        assert_eq!(
            extract(dir.path(), "l.rs#item=struct Formation").unwrap(),
            "pub struct Formation {\n    y: i64,\n}\n"
        );
        let with_doc = extract(dir.path(), "l.rs#item=struct FormationRequest").unwrap();
        assert!(
            with_doc.starts_with("/// Doc.\n#[derive(Debug)]\n"),
            "{with_doc}"
        );
        let method = extract(dir.path(), "l.rs#item=fn f").unwrap();
        assert_eq!(
            method,
            "fn f(&self) -> String {\n    format!(\"{}\", 1)\n}\n"
        );
        assert_eq!(
            extract(dir.path(), "p.toml#item=B").unwrap(),
            "# About B.\n[[item]]\nname = \"B\"   # the name\n[item.settings]\nk = 1\n"
        );
        assert!(extract(dir.path(), "p.toml#item=D").is_err());
    }

    #[test]
    fn a_changed_block_is_named_with_its_diff_and_bless_repairs_it() {
        let dir = root_with(&[("src/x.rs", SOURCE)]);
        let doc = "# T\n\n<!-- include: src/x.rs#inner -->\n```rust\nfn b() { old }\n```\n";
        let (blocks, problems) = parse(doc);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(blocks[0].comment_line, 3);
        let problems: Vec<String> = check(dir.path(), doc)
            .into_iter()
            .filter(|p| p.contains("src/x.rs#inner"))
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(":3:"), "{}", problems[0]);
        assert!(
            problems[0].contains("- fn b() { old }\n+ fn b() {}"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_rust_block_without_include_is_refused_other_languages_are_free() {
        let doc = "```sh\ncargo run\n```\n\n```rust\nfn main() {}\n```\n";
        let (_, problems) = parse(doc);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(":5:"), "{}", problems[0]);
        let (_, problems) = parse("<!-- include: a.rs -->\nSome prose.\n");
        assert!(problems[0].contains("not followed by a code block"));
    }

    #[test]
    fn bless_rewrites_blocks_and_counts() {
        let dir = root_with(&[
            ("src/x.rs", SOURCE),
            (
                RUST_FILE_OPERATION,
                "use x;\n\n// c\nfn f() {}\n#[cfg(test)]\nmod t {}\n",
            ),
            (PYTHON_FILE_OPERATION, "# c\nimport os\n\nx = 1\n"),
        ]);
        let doc = "<!-- include: src/x.rs#inner -->\n```rust\nstale\n```\n\
                   Here **9** lines of Rust and 1 lines of Python.\n";
        let blessed = bless(dir.path(), doc).unwrap();
        assert_eq!(
            blessed,
            "<!-- include: src/x.rs#inner -->\n```rust\nfn b() {}\n```\n\
             Here **2** lines of Rust and 2 lines of Python.\n"
        );
        assert!(check(dir.path(), &blessed).is_empty());
        assert!(check_line_counts(dir.path(), &blessed).is_empty());
        let problems = check_line_counts(dir.path(), doc);
        assert!(problems[0].contains("says 9 lines of Rust"), "{problems:?}");
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
        let long: String = (0..20).map(|n| format!("{n}\n")).collect();
        let changed = long.replace("10\n", "ten\n");
        assert_eq!(
            diff(&long, &changed),
            "  ...\n  7\n  8\n  9\n- 10\n+ ten\n  11\n  12\n  13\n  ...\n"
        );
    }
}
