//! The committed CLI reference (docs/cli.md) is what the parser's definitions generate, and it
//! names every flag that `--help` shows; completions and man pages come from the same
//! definitions.

mod common;
use common::*;

/// Every subcommand path (`["fit"]`, `["dataset", "build"]`, …) listed by `gfr reference`.
fn commands(reference: &str) -> Vec<Vec<String>> {
    reference
        .lines()
        .filter_map(|l| {
            l.strip_prefix("## `gfr")?
                .strip_suffix('`')
                .map(str::to_string)
        })
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn committed_reference_is_up_to_date() {
    let generated = String::from_utf8(gfr(&["reference"]).stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md"))
        .expect("docs/cli.md");
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the length".to_string(), |k| format!("line {}", k + 1));
        panic!(
            "docs/cli.md differs from what the CLI's definitions generate (first at {line}): \
             run `cargo run --release -- reference > docs/cli.md` and commit it"
        );
    }
}

#[test]
fn reference_names_every_flag_of_every_command() {
    let reference = ok(&gfr(&["reference"]));
    let cmds = commands(&reference);
    assert!(cmds.len() >= 15, "{cmds:?}");
    for cmd in [
        &["fit"][..],
        &["network"],
        &["dataset", "build"],
        &["preprocess"],
    ] {
        assert!(
            cmds.iter().any(|c| c == cmd),
            "{cmd:?} not in the reference"
        );
    }
    for cmd in &cmds {
        let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(&gfr(&args));
        // this command's section of the reference
        let head = format!(
            "## `gfr{}`",
            cmd.iter().map(|c| format!(" {c}")).collect::<String>()
        );
        let section = reference.split(&head).nth(1).unwrap();
        let section = section.split("\n## `gfr").next().unwrap();
        // the flags the help defines: option lines (`  -h, --help`, `      --bin-size <N>`)
        // and their aliases (`[alias: --bin_size]`), not flags named in descriptions
        let flags: Vec<&str> = help
            .lines()
            .flat_map(|l| {
                let t = l.trim_start();
                // (a short help has the description after two spaces on the same line)
                let head = if t.starts_with('-') {
                    t.split("  ").next().unwrap()
                } else {
                    ""
                };
                let alias = t.find("[alias").map_or("", |k| &t[k..]);
                head.split(|c: char| c.is_whitespace() || ",[]=".contains(c))
                    .chain(alias.split(|c: char| c.is_whitespace() || ",[]=".contains(c)))
            })
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .collect();
        for f in flags {
            if f == "--help" || f == "--version" {
                continue;
            }
            assert!(
                section.contains(&format!("`{f}")) || section.contains(&format!("`{}", &f[2..])),
                "gfr {cmd:?}: {f} is in --help but not in the reference"
            );
        }
    }
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let reference = ok(&gfr(&["reference"]));
    let cmds = commands(&reference);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ok(&gfr(&["completions", shell]));
        for c in cmds.iter().filter(|c| !c.is_empty()) {
            let last = c.last().unwrap();
            assert!(script.contains(last.as_str()), "{shell}: no {last}");
        }
        assert!(script.contains("activation-bin-size"), "{shell}: no flags");
    }
    assert!(!gfr(&["completions", "tcsh"]).status.success());
    let dir = scratch("man");
    ok(&gfr(&["reference", "--man", s(&dir)]));
    for c in &cmds {
        let page = dir.join(format!(
            "gfr{}.1",
            c.iter().map(|x| format!("-{x}")).collect::<String>()
        ));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{}",
            page.display()
        );
    }
}
