//! `gfr fit --slurm N`: a fit as an N-task Slurm job array (one `--shard K/N` per task) and a
//! dependent job that builds the dataset once every task succeeded.
//!
//! The batch scripts hold absolute paths only (the binary, the working folder, every file
//! argument), so they run from any folder and under `--export=NONE`. Task logs are appended
//! under `SAVE_PATH/bin{B}_actv{A}/logs/`; a requeued task (`SLURM_RESTART_COUNT` set) or a
//! task resubmitted with `--resume` after the script goes on with `gfr fit --resume`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A fit to submit as a job array.
#[derive(Clone, Debug)]
pub struct SlurmFit {
    /// Tasks N of the array (task K runs `--shard K/N`).
    pub tasks: usize,
    /// The `gfr` binary (absolute).
    pub exe: PathBuf,
    /// The folder the tasks run in (absolute; `--chdir`).
    pub workdir: PathBuf,
    /// `gfr fit` arguments of every task, paths absolute, without `--shard`.
    pub fit_args: Vec<String>,
    /// The fit's save path (absolute) and its pair folder's name (`bin{B}_actv{A}`).
    pub save_path: PathBuf,
    /// The pair folder's name, `bin{B}_actv{A}`.
    pub pair: String,
    /// Options for sbatch (partition, account, time, memory, `--cpus-per-task`, …).
    pub sbatch_args: Vec<String>,
    /// Also submit the dependent `gfr dataset build` job.
    pub build: bool,
}

/// `p` absolute, with `.` and `..` resolved lexically (the path need not exist yet).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs =
        std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Single-quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SlurmFit {
    /// `SAVE_PATH/bin{B}_actv{A}`.
    pub fn pair_dir(&self) -> PathBuf {
        self.save_path.join(&self.pair)
    }

    /// Where the batch scripts are written: `SAVE_PATH/bin{B}_actv{A}/slurm/`.
    pub fn script_dir(&self) -> PathBuf {
        self.pair_dir().join("slurm")
    }

    /// The task logs' folder: `SAVE_PATH/bin{B}_actv{A}/logs/`.
    pub fn log_dir(&self) -> PathBuf {
        self.pair_dir().join("logs")
    }

    /// The dataset the dependent job writes.
    pub fn dataset(&self) -> PathBuf {
        self.workdir.join(crate::dataset::DEFAULT_DATASET)
    }

    /// The job array's batch script.
    pub fn array_script(&self) -> String {
        let args: Vec<String> = self.fit_args.iter().map(|a| quote(a)).collect();
        format!(
            "#!/bin/bash\n\
             #SBATCH --job-name=gfr-fit-{pair}\n\
             #SBATCH --array=0-{last}\n\
             #SBATCH --chdir={workdir}\n\
             #SBATCH --output={logs}/fit-task-%a.log\n\
             #SBATCH --open-mode=append\n\
             #SBATCH --requeue\n\
             # gfr fit as task K of a {n}-task array (written by `gfr fit --slurm {n}`).\n\
             # A requeued task, or one resubmitted with `--resume` after this script, resumes.\n\
             set -euo pipefail\n\
             RESUME=()\n\
             if [ \"${{SLURM_RESTART_COUNT:-0}}\" != 0 ]; then RESUME=(--resume); fi\n\
             echo \"== $(date -Is) task ${{SLURM_ARRAY_TASK_ID}} of {n}, job ${{SLURM_JOB_ID}}, restart ${{SLURM_RESTART_COUNT:-0}}\"\n\
             exec {exe} fit {args} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --quiet \"${{RESUME[@]}}\" \"$@\"\n",
            pair = self.pair,
            last = self.tasks - 1,
            n = self.tasks,
            workdir = self.workdir.display(),
            logs = self.log_dir().display(),
            exe = quote(&self.exe.display().to_string()),
            args = args.join(" "),
        )
    }

    /// The dependent job's batch script: `gfr dataset build` for the save path.
    pub fn build_script(&self) -> String {
        format!(
            "#!/bin/bash\n\
             #SBATCH --job-name=gfr-dataset-{pair}\n\
             #SBATCH --chdir={workdir}\n\
             #SBATCH --output={logs}/dataset-build.log\n\
             #SBATCH --open-mode=append\n\
             set -euo pipefail\n\
             exec {exe} dataset build --params-dir {save} --out {out}\n",
            pair = self.pair,
            workdir = self.workdir.display(),
            logs = self.log_dir().display(),
            exe = quote(&self.exe.display().to_string()),
            save = quote(&self.save_path.display().to_string()),
            out = quote(&self.dataset().display().to_string()),
        )
    }

    /// Writes the scripts, makes the log folder and submits; returns (array job id, dataset
    /// job id).
    pub fn submit(&self) -> Result<(String, Option<String>)> {
        if self.tasks == 0 {
            return Err(crate::error::invalid("--slurm 0: must be at least 1 task"));
        }
        std::fs::create_dir_all(self.log_dir())
            .with_context(|| format!("cannot create {}", self.log_dir().display()))?;
        let array = self.script_dir().join("fit.sbatch");
        crate::data::pickle::write_atomic(&array, self.array_script().as_bytes())?;
        let id = sbatch(&self.sbatch_args, &[], &array)?;
        let build = if self.build {
            let script = self.script_dir().join("dataset-build.sbatch");
            crate::data::pickle::write_atomic(&script, self.build_script().as_bytes())?;
            Some(sbatch(
                &self.sbatch_args,
                &[
                    format!("--dependency=afterok:{id}"),
                    "--kill-on-invalid-dep=yes".into(),
                ],
                &script,
            )?)
        } else {
            None
        };
        Ok((id, build))
    }
}

/// `sbatch --parsable ARGS EXTRA SCRIPT`: the job id.
fn sbatch(args: &[String], extra: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .args(extra)
        .arg(script)
        .output()
        .context("cannot run sbatch (is this a Slurm login node? `sbatch` must be on the PATH)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch {} printed no job id", script.display());
    }
    Ok(id)
}
