//! `gfr fit --slurm N` on a real Slurm cluster (`scripts/slurm-local.sh start` gives one on
//! localhost; `.ci/run` starts it). Without a cluster the tests say they are skipped.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a Slurm cluster answers here; else says why the test is skipped.
fn cluster() -> bool {
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => true,
        Ok(o) => {
            eprintln!(
                "SKIPPED: sinfo found no Slurm cluster ({}); start one with scripts/slurm-local.sh start",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: no Slurm here (sinfo: {e}); scripts/slurm-local.sh install && start"
            );
            false
        }
    }
}

/// Runs gfr in `dir` (not the project folder).
fn gfr_at(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gfr"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Waits until none of `jobs` is in the queue.
fn wait_for(jobs: &[&str], limit: Duration) {
    let t0 = Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-j", &jobs.join(","), "-o", "%i"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(t0.elapsed() < limit, "jobs {jobs:?} still queued");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The job id after `what` in gfr's output (`submitted job array 12 …`, `submitted job 13: …`).
fn job_id(out: &str, what: &str) -> String {
    out.lines()
        .filter_map(|l| l.strip_prefix(what))
        .filter_map(|r| r.split_whitespace().next())
        .map(|id| id.trim_end_matches(':'))
        .find(|id| id.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no `{what}` in:\n{out}"))
        .to_string()
}

const SLOW: &str = r#"{"config_name": "slurm-test", "activation_epochs": 100, "activation_repeats": 1,
  "hparams": [{"lr": 1e-2, "epochs": 150}, {"lr": 1e-3, "epochs": 150}, {"lr": 1e-4, "epochs": 150}]}"#;

#[test]
fn a_fit_runs_as_a_job_array_and_a_cancelled_task_resumes_to_the_unsharded_result() {
    if !cluster() {
        return;
    }
    let dir = scratch("slurm");
    let (project, elsewhere) = (dir.join("project"), dir.join("elsewhere"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    ok(&gfr_at(
        &project,
        &["simulate", "--cells", "16", "--seed", "21"],
    ));
    let cfg = config(&project, "slow.json", SLOW);
    let ids = project.join("data/cell_ids.csv");
    let test_cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/test.json");

    // 1. four tasks, submitted from another folder with relative paths; the dependent job
    // builds the dataset
    let out = ok(&gfr_at(
        &elsewhere,
        &[
            "fit",
            s(&ids),
            "--data-dir",
            "../project/data",
            "--save-path",
            "../project/params",
            "--config-path",
            s(&test_cfg),
            "--slurm",
            "4",
            "--slurm-arg=--cpus-per-task=1",
        ],
    ));
    let (array, build) = (
        job_id(&out, "submitted job array "),
        job_id(&out, "submitted job "),
    );
    wait_for(&[&array, &build], Duration::from_secs(600));
    let pair = project.join("params/bin20_actv20");
    let results = std::fs::read_dir(&pair)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pickle")
        })
        .count();
    assert_eq!(results, 16, "{out}");
    for k in 0..4 {
        assert!(
            pair.join(format!("fit_summary.shard-{k}-of-4.json"))
                .exists()
        );
        assert!(pair.join(format!("logs/fit-task-{k}.log")).exists());
    }
    let log = std::fs::read_to_string(pair.join("logs/dataset-build.log")).unwrap();
    assert!(
        log.contains("4 fit summaries") && log.contains("wrote"),
        "{log}"
    );
    gfr::Dataset::load(&elsewhere.join("model/gfr_dataset.pickle")).unwrap();

    // 2. a longer fit: task 1 cancelled once it has saved a partial result, resubmitted as
    // printed; the results equal an unsharded fit's bit for bit
    let out = ok(&gfr_at(
        &elsewhere,
        &[
            "fit",
            s(&ids),
            "--data-dir",
            "../project/data",
            "--save-path",
            "../project/cut",
            "--config-path",
            s(&cfg),
            "--slurm",
            "4",
            "--no-build",
            "--batch-cells",
            "1",
        ],
    ));
    let array = job_id(&out, "submitted job array ");
    let cut = project.join("cut/bin20_actv20");
    let t0 = Instant::now();
    // task 1 fits cells 2, 6, 10, 14: wait for its first result, partial or whole
    while !cut.join("900000002.pickle").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "task 1 saved nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&Command::new("scancel")
        .arg(format!("{array}_1"))
        .output()
        .unwrap());
    wait_for(&[&array], Duration::from_secs(600));
    assert!(
        !cut.join("fit_summary.shard-1-of-4.json").exists(),
        "task 1 ended before it was cancelled; make the config slower"
    );
    let resubmit = out
        .lines()
        .find_map(|l| l.split("(it resumes): ").nth(1))
        .expect("the resubmit command")
        .replace("--array=K", "--array=1");
    let words: Vec<&str> = resubmit.split_whitespace().collect();
    let again = Command::new(words[0])
        .arg("--parsable")
        .args(&words[1..])
        .output()
        .unwrap();
    let text = ok(&again);
    let id = text.trim().split(';').next().unwrap().to_string();
    wait_for(&[&id], Duration::from_secs(600));
    let log = std::fs::read_to_string(cut.join("logs/fit-task-1.log")).unwrap();
    assert!(
        log.contains("going on from its partial result") || log.contains("skips it"),
        "{log}"
    );
    assert!(cut.join("fit_summary.shard-1-of-4.json").exists(), "{log}");

    let whole = project.join("whole");
    ok(&gfr_at(
        &project,
        &[
            "fit",
            s(&ids),
            "--config-path",
            s(&cfg),
            "--save-path",
            s(&whole),
            "--batch-cells",
            "1",
            "--quiet",
        ],
    ));
    for id in 900000001..=900000016u64 {
        let a = std::fs::read(whole.join(format!("bin20_actv20/{id}.pickle"))).unwrap();
        let b = std::fs::read(cut.join(format!("{id}.pickle"))).unwrap();
        assert!(
            a == b,
            "cell {id}: the Slurm result differs from the unsharded fit"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--dry-run` prints the scripts (absolute paths, resume on requeue) and submits nothing;
/// no cluster needed.
#[test]
fn dry_run_prints_scripts_with_absolute_paths() {
    let dir = scratch("slurm-dry");
    ok(&gfr_at(&dir, &["simulate", "--cells", "2"]));
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    // a 3-task dry run from `sub`, with `extra` flags
    let dry_run = |extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--data-dir",
            "../data",
            "--save-path",
            "../p",
            "--slurm",
            "3",
            "--dry-run",
        ];
        args.extend(extra);
        ok(&gfr_at(&sub, &args))
    };
    let out = dry_run(&["--slurm-arg=--time=01:00:00"]);
    let root = std::fs::canonicalize(&dir).unwrap();
    assert!(out.contains("#SBATCH --array=0-2"), "{out}");
    assert!(out.contains(&format!("'{}/data'", root.display())), "{out}");
    assert!(
        out.contains(&format!(
            "#SBATCH --output={}/p/bin20_actv20/logs/fit-task-%a.log",
            root.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("SLURM_RESTART_COUNT") && out.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\""),
        "{out}"
    );
    assert!(out.contains("dataset build --params-dir"), "{out}");
    // the tasks get the backend's default --batch-cells
    assert!(out.contains("'--batch-cells' '16'"), "{out}");
    let wgpu = dry_run(&["--device", "wgpu"]);
    assert!(wgpu.contains("'--device' 'wgpu'"), "{wgpu}");
    assert!(wgpu.contains("'--batch-cells' '2500'"), "{wgpu}");
    assert!(!root.join("p").exists(), "a dry run writes nothing");
    // --slurm-arg without --slurm is a usage error
    exits_with(&gfr_at(&sub, &["fit", "--slurm-arg=--time=1"]), 1);
    // a bad setting or data folder is said at once, as the tasks would say it, with nothing
    // written (a real submission would have run every task only to fail)
    for (bad, flag) in [
        (["--degree", "0"], "--degree 0"),
        (["--batch-cells", "0"], "--batch-cells 0"),
    ] {
        let mut args = vec!["fit", "--data-dir", "../data", "--save-path", "../p"];
        args.extend(bad);
        args.extend(["--slurm", "3", "--dry-run"]);
        let e = exits_with(&gfr_at(&sub, &args), 1);
        assert!(e.contains(flag) && !e.contains("#SBATCH"), "{e}");
    }
    std::fs::write(sub.join("ids.csv"), "900000001\n").unwrap();
    let e = fails(&gfr_at(
        &sub,
        &[
            "fit",
            "ids.csv",
            "--data-dir",
            "../typo",
            "--slurm",
            "3",
            "--dry-run",
        ],
    ));
    assert!(
        e.contains("--data-dir ../typo") && !e.contains("#SBATCH"),
        "{e}"
    );
    assert!(!root.join("p").exists(), "nothing written");
    std::fs::remove_dir_all(dir).unwrap();
}
