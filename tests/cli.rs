//! The `l0` program, run as a subprocess on small files the tests write.

mod common;

use common::Rng;
use l0::io::npy::{read_npy, write_npy_f64, write_npy_i64};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l0");

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("l0-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn l0<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Runs `l0` expecting success (the assertion shows its stderr).
fn succeeds<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let o = l0(args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A random sparse `rows x cols` problem with an exact solution, written as
/// a Matrix Market file plus targets. Row `empty_row` (if any) is all zero.
struct Files {
    dir: PathBuf,
    matrix: PathBuf,
    targets: PathBuf,
    groups: PathBuf,
    names: PathBuf,
    entries: Vec<(usize, usize, f64)>,
    rows: usize,
    cols: usize,
    y: Vec<f64>,
}

fn problem(name: &str, rows: usize, cols: usize, density: f64, empty_row: Option<usize>) -> Files {
    let dir = scratch(name);
    let mut rng = Rng(7);
    let mut entries = Vec::new();
    for q in 0..rows {
        for j in 0..cols {
            if Some(q) != empty_row && rng.uniform() < density {
                entries.push((q, j, (1.0 + 9.0 * rng.uniform()).round()));
            }
        }
    }
    let w: Vec<f64> = (0..cols)
        .map(|_| {
            if rng.uniform() < 0.3 {
                1.0 + rng.uniform()
            } else {
                0.0
            }
        })
        .collect();
    let mut y = vec![0.0; rows];
    for &(q, j, v) in &entries {
        y[q] += v * w[j];
    }
    let mut mtx = format!(
        "%%MatrixMarket matrix coordinate real general\n{rows} {cols} {}\n",
        entries.len()
    );
    for &(q, j, v) in &entries {
        mtx.push_str(&format!("{} {} {v}\n", q + 1, j + 1));
    }
    let matrix = dir.join("m.mtx");
    fs::write(&matrix, mtx).unwrap();
    let targets = dir.join("y.npy");
    write_npy_f64(&targets, &y).unwrap();
    let groups = dir.join("g.npy");
    write_npy_i64(
        &groups,
        &(0..rows as i64).map(|q| q % 3).collect::<Vec<_>>(),
    )
    .unwrap();
    let names = dir.join("names.csv");
    let text: String = (0..rows).map(|q| format!("t{q}\n")).collect();
    fs::write(&names, text).unwrap();
    Files {
        dir,
        matrix,
        targets,
        groups,
        names,
        entries,
        rows,
        cols,
        y,
    }
}

impl Files {
    fn m_times(&self, w: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.rows];
        for &(q, j, v) in &self.entries {
            out[q] += v * w[j];
        }
        out
    }
    /// [`Files::base_args`] with another seed.
    fn args_with_seed<'a>(&'a self, out: &'a Path, seed: &'a str) -> Vec<&'a str> {
        let mut a = self.base_args(out);
        let k = a.iter().position(|&x| x == "--seed").unwrap();
        a[k + 1] = seed;
        a
    }
    fn base_args<'a>(&'a self, out: &'a Path) -> Vec<&'a str> {
        vec![
            "calibrate",
            "--matrix",
            p(&self.matrix),
            "--targets",
            p(&self.targets),
            "--groups",
            p(&self.groups),
            "--target-names",
            p(&self.names),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--seed",
            "5",
            "--lr",
            "0.05",
            "--out",
            p(out),
        ]
    }

    /// [`Files::base_args`], then `fixed` (a test's own flags), then `extra`.
    fn args_with(&self, out: &Path, fixed: &[&str], extra: &[&str]) -> Vec<String> {
        let mut a = self.base_args(out);
        a.extend_from_slice(fixed);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    }
}

fn npy(path: &Path) -> Vec<f64> {
    read_npy(path).unwrap().to_f64_vec("test").unwrap()
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn calibrate_writes_consistent_outputs() {
    let f = problem("outputs", 12, 200, 0.3, Some(4));
    let out = f.dir.join("out");
    let mut args = f.base_args(&out);
    args.extend([
        "--epochs",
        "300",
        "--log-every",
        "100",
        "--exclude-targets",
        "t7",
        "--loss",
        "relative",
    ]);
    let o = l0(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: 1 target row(s) of the matrix are all zero and cannot be matched; left out of the loss: t4"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("outputs in"), "{stdout}");

    // weights.npy and weights.csv agree; M w matches targets.csv.
    let w = npy(&out.join("weights.npy"));
    assert_eq!(w.len(), f.cols);
    assert!(w.iter().all(|&x| x >= 0.0 && x.is_finite()));
    let wcsv = csv_rows(&out.join("weights.csv"));
    assert_eq!(wcsv[0], ["column", "weight", "gate"]);
    assert_eq!(wcsv.len(), f.cols + 1);
    for (j, row) in wcsv[1..].iter().enumerate() {
        assert_eq!(row[0], j.to_string());
        assert_eq!(row[1].parse::<f64>().unwrap(), w[j]);
        let gate: f64 = row[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&gate));
        assert_eq!(gate == 0.0, w[j] == 0.0, "column {j}");
    }
    let yhat = f.m_times(&w);
    let t = csv_rows(&out.join("targets.csv"));
    assert_eq!(
        t[0],
        [
            "target_name",
            "estimate",
            "target",
            "error",
            "rel_error",
            "abs_error",
            "rel_abs_error",
            "excluded",
            "holdout",
            "top_record",
            "top_record_share",
            "records_contributing"
        ]
    );
    assert_eq!(t.len(), f.rows + 1);
    let mut abs_rel = vec![];
    for (q, row) in t[1..].iter().enumerate() {
        assert_eq!(row[0], format!("t{q}"));
        assert_eq!(row[2].parse::<f64>().unwrap(), f.y[q]);
        let est: f64 = row[1].parse().unwrap();
        assert!(
            (est - yhat[q]).abs() <= 1e-9 * (1.0 + yhat[q].abs()),
            "row {q}"
        );
        let rel: f64 = row[4].parse().unwrap();
        assert!((rel - (est - f.y[q]) / (f.y[q] + 1.0)).abs() < 1e-12);
        assert_eq!(row[5].parse::<f64>().unwrap(), (est - f.y[q]).abs());
        assert_eq!(row[6].parse::<f64>().unwrap(), rel.abs());
        let excluded = row[7] == "true";
        assert_eq!(excluded, q == 4 || q == 7, "row {q}");
        assert_eq!(row[8], "false", "row {q}: no holdout");
        // Who carries the target, from the entries.
        let contrib: Vec<(usize, f64)> = f
            .entries
            .iter()
            .filter(|e| e.0 == q)
            .map(|&(_, j, v)| (j, v * w[j]))
            .collect();
        let top = contrib.iter().copied().filter(|c| c.1 > 0.0).fold(
            None::<(usize, f64)>,
            |b, c| match b {
                Some(bc) if bc.1 >= c.1 => b,
                _ => Some(c),
            },
        );
        assert_eq!(
            row[9],
            top.map_or(String::new(), |t| t.0.to_string()),
            "row {q}"
        );
        let share: f64 = row[10].parse().unwrap();
        let want = top.map_or(0.0, |t| t.1 / est);
        assert!(
            (share - want).abs() <= 1e-9 * want,
            "row {q}: {share} vs {want}"
        );
        let count = contrib.iter().filter(|c| c.1 != 0.0).count();
        assert_eq!(row[11], count.to_string(), "row {q}");
        if !excluded {
            abs_rel.push(rel.abs());
        }
    }

    // summary.json: the promised keys, consistent with the other files.
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["rows"], 12);
    assert_eq!(s["cols"], 200);
    assert_eq!(s["nnz"].as_u64().unwrap() as usize, f.entries.len());
    assert_eq!(s["epochs"], 300);
    assert_eq!(s["seed"], 5);
    let simd = l0::backend::simd::SimdPath::best().name();
    assert_eq!(s["device"], format!("cpu (1 threads, {simd})").as_str());
    assert_eq!(s["targets_excluded"], 2);
    let active = w.iter().filter(|&&x| x > 0.0).count();
    assert_eq!(s["active"].as_u64().unwrap() as usize, active);
    let sparsity = s["sparsity"].as_f64().unwrap();
    assert!((sparsity - (1.0 - active as f64 / 200.0)).abs() < 1e-12);
    // Concentration: Kish's ess, design effect, max, top 1%.
    let (sum, sum2) = w.iter().fold((0.0, 0.0), |(a, b), x| (a + x, b + x * x));
    let ess = sum * sum / sum2;
    let rel = |key: &str, want: f64| {
        let got = s[key].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-12 * want, "{key}: {got} vs {want}");
    };
    rel("ess", ess);
    rel("design_effect", active as f64 / ess);
    let max = w.iter().copied().fold(0.0, f64::max);
    rel("max_weight", max);
    rel("top1pct_share", max / sum); // 1% of fewer than 100 records: the top one
    assert_eq!(s["weight_quantiles"]["max"].as_f64().unwrap(), max);
    let n = abs_rel.len() as f64;
    let mean = abs_rel.iter().sum::<f64>() / n;
    assert!((s["mean_abs_rel_err"].as_f64().unwrap() - mean).abs() < 1e-9);
    let max = abs_rel.iter().cloned().fold(0.0, f64::max);
    assert!((s["max_abs_rel_err"].as_f64().unwrap() - max).abs() < 1e-9);
    let rel_loss = abs_rel.iter().map(|e| e * e).sum::<f64>() / n;
    assert!((s["rel_loss"].as_f64().unwrap() - rel_loss).abs() < 1e-9);
    for (key, t) in [
        ("within_1pct", 0.01),
        ("within_5pct", 0.05),
        ("within_10pct", 0.10),
        ("within_25pct", 0.25),
    ] {
        let share = abs_rel.iter().filter(|&&e| e <= t).count() as f64 / n;
        assert_eq!(s[key].as_f64().unwrap(), share, "{key}");
    }
    for key in ["seconds", "seconds_per_epoch", "loss"] {
        assert!(s[key].as_f64().unwrap().is_finite(), "{key}");
    }
    // Settings keep their JSON types.
    let settings = &s["settings"];
    assert_eq!(settings["loss"], "relative");
    assert_eq!(settings["exclude_targets"], serde_json::json!(["t7"]));
    assert_eq!(settings["epochs"], 300);
    assert_eq!(settings["lr"], 0.05);
    assert_eq!(settings["seed"], 5);
    assert_eq!(settings["normalize_groups"], true);
    assert_eq!(settings["use_gates"], true);
    assert_eq!(settings["log_every"], 100);
    assert_eq!(settings["checkpoint_every"], serde_json::Value::Null);
    assert_eq!(settings["group_multipliers"], serde_json::json!({}));
    assert_eq!(settings["init_weights"], 1.0);

    // log.csv: one row per target at epochs 100, 200, 300.
    let log = csv_rows(&out.join("log.csv"));
    assert_eq!(
        log[0].join(","),
        "target_name,estimate,target,epoch,error,rel_error,abs_error,rel_abs_error,loss,holdout"
    );
    assert_eq!(log.len(), 1 + 3 * f.rows);
    let last = &log[1 + 2 * f.rows..];
    for (q, row) in last.iter().enumerate() {
        assert_eq!(row[0], format!("t{q}"));
        assert_eq!(row[3], "300");
        let final_est: f64 = t[q + 1][1].parse().unwrap();
        let logged: f64 = row[1].parse().unwrap();
        assert!(
            (logged - final_est).abs() <= 1e-12 * (1.0 + final_est.abs()),
            "final estimate of t{q}: {logged} vs {final_est}"
        );
        let (est, tgt): (f64, f64) = (row[1].parse().unwrap(), row[2].parse().unwrap());
        assert_eq!(row[4].parse::<f64>().unwrap(), est - tgt);
        assert_eq!(row[6].parse::<f64>().unwrap(), (est - tgt).abs());
    }
    let loss: f64 = last[0][8].parse().unwrap();
    assert_eq!(loss, s["loss"].as_f64().unwrap());

    // predict reproduces the estimates.
    let pred_out = f.dir.join("pred.npy");
    let o = l0(&[
        "predict",
        "--matrix",
        p(&f.matrix),
        "--weights",
        p(&out.join("weights.npy")),
        "--out",
        p(&pred_out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pred = npy(&pred_out);
    for q in 0..f.rows {
        assert_eq!(pred[q], t[q + 1][1].parse::<f64>().unwrap(), "t{q}");
    }
}

#[test]
fn predict_prints_or_writes_m_times_w() {
    let f = problem("predict", 5, 8, 0.5, None);
    let w: Vec<f64> = (0..8).map(|j| j as f64 * 0.5).collect();
    let wpath = f.dir.join("w.npy");
    write_npy_f64(&wpath, &w).unwrap();
    let want = f.m_times(&w);
    let o = l0(&["predict", "--matrix", p(&f.matrix), "--weights", p(&wpath)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<f64> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    common::assert_close("stdout", &got, &want, 1e-12, 0.0);
    let csv = f.dir.join("p.csv");
    let o = l0(&[
        "predict",
        "--matrix",
        p(&f.matrix),
        "--weights",
        p(&wpath),
        "--out",
        p(&csv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&csv);
    assert_eq!(rows[0], ["estimate"]);
    let got: Vec<f64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    common::assert_close("csv", &got, &want, 1e-12, 0.0);
    // The scipy fixture (csr, deflated) works too.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/csr_compressed.npz");
    let w4 = f.dir.join("w4.npy");
    write_npy_f64(&w4, &[1.0, 10.0, 100.0, 1000.0]).unwrap();
    let o = l0(&["predict", "--matrix", p(&fixture), "--weights", p(&w4)]);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "-1998.5\n325.0\n540.0\n"
    );
}

/// Runs `l0` expecting failure: exit code 2, exactly one line on stderr.
fn fails<S: AsRef<OsStr>>(args: &[S]) -> String {
    let o = l0(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_string()
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_code_2() {
    let f = problem("errors", 4, 6, 0.5, None);
    let out = f.dir.join("out");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (m, y) = (p(&f.matrix), p(&f.targets));
    let run = |matrix: &str, targets: &str, extra: &[&str]| {
        let mut a = vec![
            "calibrate",
            "--matrix",
            matrix,
            "--targets",
            targets,
            "--out",
            p(&out),
            "--epochs",
            "5",
        ];
        a.extend_from_slice(extra);
        fails(&a)
    };

    // A truncated zip archive.
    let full = fs::read(data.join("csr_compressed.npz")).unwrap();
    let cut = f.dir.join("cut.npz");
    fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let e = run(p(&cut), y, &[]);
    assert!(e.starts_with(&format!("error: {}: ", cut.display())), "{e}");
    assert_eq!(
        e,
        format!(
            "error: {}: not a valid .npz (zip) archive: invalid Zip archive: Could not find EOCD",
            cut.display()
        )
    );

    // Targets of the wrong length.
    let short = f.dir.join("short.npy");
    write_npy_f64(&short, &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(
        run(m, p(&short), &[]),
        format!(
            "error: {}: expected 4 targets (one per matrix row), found 3",
            short.display()
        )
    );

    // Column indices out of range (a scipy-written file).
    let bad = data.join("bad_index.npz");
    assert_eq!(
        run(p(&bad), y, &[]),
        format!(
            "error: {}: index out of range in indices (column indices): 4 at position 1, but the bound is 4",
            bad.display()
        )
    );

    // NaN in the targets.
    let nan = f.dir.join("nan.npy");
    write_npy_f64(&nan, &[1.0, f64::NAN, 2.0, 3.0]).unwrap();
    assert_eq!(
        run(m, p(&nan), &[]),
        format!(
            "error: {}: non-finite value in targets at index 1: NaN",
            nan.display()
        )
    );

    // An unknown loss.
    assert_eq!(
        run(m, y, &["--loss", "hinge"]),
        "error: --loss: unknown loss 'hinge': expected 'mse', 'relative' or 'l1-relative'"
    );

    // A missing file.
    let missing = f.dir.join("missing.npz");
    let e = run(p(&missing), y, &[]);
    assert!(
        e.starts_with(&format!("error: {}: cannot read file: ", missing.display())),
        "{e}"
    );

    // A wrong dtype (object array) for the targets.
    let object = data.join("object.npy");
    let e = run(m, p(&object), &[]);
    assert!(
        e.starts_with(&format!("error: {}: ", object.display())),
        "{e}"
    );

    // Group ids that are not integers; an unknown target to exclude.
    let groups = f.dir.join("g.csv");
    fs::write(&groups, "0\n1\n1.5\n2\n").unwrap();
    assert_eq!(
        run(m, y, &["--groups", p(&groups)]),
        format!(
            "error: {}: line 3: expected an integer, got '1.5'",
            groups.display()
        )
    );
    assert_eq!(
        run(m, y, &["--exclude-targets", "nope"]),
        "error: --exclude-targets: no target is named 'nope'"
    );

    // Nothing was written for any of them.
    assert!(!out.exists());
}

/// Waits until `path` exists (or the child exits), polling.
fn wait_for(path: &Path, child: &mut std::process::Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if path.exists() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return path.exists();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Waits until the log at `path` holds a row past its header (or the
/// child exits); true if it does.
fn wait_for_log_row(path: &Path, child: &mut std::process::Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let rows = fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if rows > 1 {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Runs `f` with `extra` flags to the end into `full`, then starts the
/// same run into `part` and returns it (stderr to `err`).
fn full_run_and_a_started_one(
    f: &Files,
    full: &Path,
    part: &Path,
    extra: &[&str],
    err: Stdio,
) -> std::process::Child {
    let mut args = f.base_args(full);
    args.extend_from_slice(extra);
    let o = l0(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut args = f.base_args(part);
    args.extend_from_slice(extra);
    Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

#[test]
fn killed_run_resumes_to_bit_identical_weights() {
    let f = problem("resume", 30, 400, 0.2, None);
    let (full, part) = (f.dir.join("full"), f.dir.join("part"));
    let epochs = "6000";
    let extra = [
        "--epochs",
        epochs,
        "--log-every",
        "500",
        "--checkpoint-every",
        "40",
    ];
    let mut child = full_run_and_a_started_one(&f, &full, &part, &extra, Stdio::null());
    let ckpt = part.join("checkpoint.l0ck");
    assert!(wait_for(&ckpt, &mut child), "no checkpoint appeared");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    assert!(!part.join("weights.npy").exists());
    let saved = l0::checkpoint::Checkpoint::read(&ckpt).unwrap();
    assert!(saved.state.step > 0 && saved.state.step < 6000);
    assert_eq!(saved.state.step % 40, 0);

    // Resume with only the inputs: the settings come from the checkpoint.
    let o = l0(&[
        "calibrate",
        "--matrix",
        p(&f.matrix),
        "--targets",
        p(&f.targets),
        "--groups",
        p(&f.groups),
        "--target-names",
        p(&f.names),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--resume",
        p(&part),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert!(
        err.contains(&format!("resuming at epoch {}", saved.state.step)),
        "{err}"
    );
    assert_eq!(
        fs::read(full.join("weights.npy")).unwrap(),
        fs::read(part.join("weights.npy")).unwrap(),
        "resumed weights differ from the uninterrupted run"
    );
    assert_eq!(
        fs::read(full.join("log.csv")).unwrap(),
        fs::read(part.join("log.csv")).unwrap()
    );
    assert_eq!(
        fs::read(full.join("checkpoint.l0ck")).unwrap(),
        fs::read(part.join("checkpoint.l0ck")).unwrap()
    );
}

/// A small problem run for `epochs` with a checkpoint every 20 epochs,
/// into its folder `run`.
fn checkpointed_run(name: &str, epochs: &str) -> (Files, PathBuf) {
    let f = problem(name, 8, 50, 0.4, None);
    let run = f.dir.join("run");
    let mut args = f.base_args(&run);
    args.extend(["--epochs", epochs, "--checkpoint-every", "20"]);
    assert!(l0(&args).status.success());
    (f, run)
}

#[test]
fn resume_refuses_other_data_and_names_changed_settings() {
    let (f, run) = checkpointed_run("refuse", "60");
    let ckpt = run.join("checkpoint.l0ck");

    // Changed targets: refused.
    let mut y = f.y.clone();
    y[3] += 1.0;
    let y2 = f.dir.join("y2.npy");
    write_npy_f64(&y2, &y).unwrap();
    let e = fails(&[
        "calibrate",
        "--matrix",
        p(&f.matrix),
        "--targets",
        p(&y2),
        "--groups",
        p(&f.groups),
        "--resume",
        p(&run),
        "--epochs",
        "80",
    ]);
    assert_eq!(
        e,
        format!(
            "error: {}: the targets differ from the checkpoint's: {} (8 values) now, {} (8 values) then; resume with the inputs the run started with",
            ckpt.display(),
            y2.display(),
            f.targets.display()
        )
    );

    // A changed hyperparameter: a warning naming it, old -> new.
    let o = l0(&[
        "calibrate",
        "--matrix",
        p(&f.matrix),
        "--targets",
        p(&f.targets),
        "--groups",
        p(&f.groups),
        "--resume",
        p(&run),
        "--epochs",
        "80",
        "--lr",
        "0.07",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: lr changed since the checkpoint: 0.05 -> 0.07"),
        "{err}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["epochs"], 80);
    assert_eq!(s["epochs_run"], 20);
    assert_eq!(s["resumed_from"], 60);

    // A damaged checkpoint: refused with the reason.
    let mut bytes = fs::read(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&ckpt, &bytes).unwrap();
    let base = [
        "calibrate",
        "--matrix",
        p(&f.matrix),
        "--targets",
        p(&f.targets),
        "--groups",
        p(&f.groups),
        "--resume",
        p(&run),
    ];
    assert_eq!(
        fails(&base),
        format!(
            "error: {}: corrupt checkpoint: checksum mismatch",
            ckpt.display()
        )
    );
    fs::write(&ckpt, &bytes[..bytes.len() - 10]).unwrap();
    assert_eq!(
        fails(&base),
        format!(
            "error: {}: truncated checkpoint: expected {} bytes, found {}",
            ckpt.display(),
            bytes.len(),
            bytes.len() - 10
        )
    );
}

/// A regression problem (120 x 10, y = 3 x_0 - 2 x_4 + 1) written as a
/// dense Matrix Market X and y.npy in a fresh folder: (folder, X path, y
/// path, row-major X, y).
fn regression_files(name: &str) -> (PathBuf, PathBuf, PathBuf, Vec<f64>, Vec<f64>) {
    let dir = scratch(name);
    let (n, d) = (120, 10);
    let mut rng = Rng(3);
    let x: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| 3.0 * x[i * d] - 2.0 * x[i * d + 4] + 1.0)
        .collect();
    let mut mtx = format!("%%MatrixMarket matrix array real general\n{n} {d}\n");
    for j in 0..d {
        for i in 0..n {
            mtx.push_str(&format!("{}\n", x[i * d + j]));
        }
    }
    let xp = dir.join("x.mtx");
    fs::write(&xp, mtx).unwrap();
    let yp = dir.join("y.npy");
    write_npy_f64(&yp, &y).unwrap();
    (dir, xp, yp, x, y)
}

#[test]
fn regress_selects_the_true_features() {
    let (dir, xp, yp, _, _) = regression_files("regress");
    let d = 10;
    let out = dir.join("out");
    let base = ["regress", "--x", p(&xp), "--y", p(&yp), "--out", p(&out)];
    let mut first = base.to_vec();
    first.extend([
        "--epochs",
        "1500",
        "--lr",
        "0.05",
        "--lambda-l0",
        "0.05",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]);
    let o = l0(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    let coef = npy(&out.join("coefficients.npy"));
    assert_eq!(coef.len(), d);
    assert!((coef[0] - 3.0).abs() < 0.3, "{coef:?}");
    assert!((coef[4] + 2.0).abs() < 0.3, "{coef:?}");
    let sel = csv_rows(&out.join("selected.csv"));
    assert_eq!(sel[0], ["feature", "coefficient", "gate"]);
    let features: Vec<&str> = sel[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(features, ["0", "4"], "{coef:?}");
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["selected"], 2);
    assert_eq!(s["cols"], 10);
    assert!((s["intercept"].as_f64().unwrap() - 1.0).abs() < 0.3);

    // The folder is this run's: a second one needs --overwrite.
    let mut again = base.to_vec();
    again.extend(["--epochs", "10"]);
    assert_eq!(
        fails(&again),
        format!(
            "error: {}: holds the files of an earlier run (coefficients.npy, selected.csv, summary.json): give --overwrite to replace them, or another --out",
            out.display()
        )
    );
    let mut over = again.to_vec();
    over.push("--overwrite");
    let o = l0(&over);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["epochs"], 10);
}

/// The four result files of a run, present or not.
const RESULTS: [&str; 4] = ["weights.npy", "weights.csv", "targets.csv", "summary.json"];

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_run_owns_its_output_folder() {
    let f = problem("owned", 6, 40, 0.4, None);
    let out = f.dir.join("out");
    let mut first = f.base_args(&out);
    first.extend([
        "--epochs",
        "20",
        "--log-every",
        "10",
        "--checkpoint-every",
        "10",
    ]);
    assert!(l0(&first).status.success());

    // A second run into the same folder is refused, naming what is there.
    let mut second = f.args_with_seed(&out, "9");
    second.extend(["--epochs", "30"]);
    assert_eq!(
        fails(&second),
        format!(
            "error: {}: holds the files of an earlier run (checkpoint.l0ck, log.csv, summary.json, targets.csv, weights.csv, weights.npy): give --overwrite to replace them, or another --out",
            out.display()
        )
    );
    assert_eq!(summary(&out)["epochs"], 20);

    // --overwrite with a mistake in the flags leaves the earlier run alone.
    second.push("--overwrite");
    let mut wrong = second.clone();
    wrong.extend(["--loss", "hinge"]);
    assert_eq!(
        fails(&wrong),
        "error: --loss: unknown loss 'hinge': expected 'mse', 'relative' or 'l1-relative'"
    );
    assert_eq!(summary(&out)["epochs"], 20);
    assert!(out.join("log.csv").exists());

    // --overwrite replaces them: no log or checkpoint of the first run is left.
    let o = l0(&second);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["summary.json", "targets.csv", "weights.csv", "weights.npy"]
    );
    assert_eq!(summary(&out)["epochs"], 30);
    assert_eq!(summary(&out)["seed"], 9);
    // Nothing is left beside the folder either.
    let siblings: Vec<String> = fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");

    // A folder with files l0 did not write is refused even with --overwrite.
    let mine = f.dir.join("mine");
    fs::create_dir_all(&mine).unwrap();
    fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let mut third = f.base_args(&mine);
    third.extend(["--epochs", "5", "--overwrite"]);
    assert_eq!(
        fails(&third),
        format!(
            "error: {}: holds files that l0 did not write (notes.txt): give --out an empty or new folder",
            mine.display()
        )
    );
    assert_eq!(
        fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// Checks that `out` holds either no result file or all four, from one run.
fn assert_whole_results(f: &Files, out: &Path, seeds: &[u64]) -> bool {
    let present: Vec<bool> = RESULTS.iter().map(|n| out.join(n).exists()).collect();
    if present.iter().all(|&p| !p) {
        return false;
    }
    assert!(
        present.iter().all(|&p| p),
        "a partial result set: {present:?}"
    );
    let w = npy(&out.join("weights.npy"));
    let wcsv = csv_rows(&out.join("weights.csv"));
    for (j, row) in wcsv[1..].iter().enumerate() {
        assert_eq!(row[1].parse::<f64>().unwrap(), w[j], "weights.csv vs .npy");
    }
    let s = summary(out);
    assert!(seeds.contains(&s["seed"].as_u64().unwrap()), "{s}");
    let active = w.iter().filter(|&&x| x > 0.0).count();
    assert_eq!(
        s["active"].as_u64().unwrap() as usize,
        active,
        "summary vs weights"
    );
    let yhat = f.m_times(&w);
    for (q, row) in csv_rows(&out.join("targets.csv"))[1..].iter().enumerate() {
        let est: f64 = row[1].parse().unwrap();
        assert!(
            (est - yhat[q]).abs() <= 1e-9 * (1.0 + yhat[q].abs()),
            "targets vs weights"
        );
    }
    if out.join("log.csv").exists() {
        // The log is the second runs' (the first wrote none).
        assert_ne!(s["seed"], 5, "the first run's results beside a later log");
    }
    true
}

#[test]
fn a_kill_at_any_instant_leaves_whole_results() {
    let f = problem("atomic", 10, 30000, 0.002, None);
    let out = f.dir.join("out");
    let mut first = f.base_args(&out);
    first.extend(["--epochs", "5"]);
    assert!(l0(&first).status.success());
    let again = |seed: &str| {
        let mut a = f.args_with_seed(&out, seed);
        a.extend(["--epochs", "5", "--overwrite", "--log-every", "5"]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let start = Instant::now();
    assert!(l0(&again("6")).status.success());
    let full = start.elapsed();
    let mut rng = Rng(11);
    // Kills from well before the end to past it (the machine's load moves
    // the end), until at least 16 kills and 3 that left results.
    let mut whole = 0;
    let mut i = 0u64;
    while (i < 16 || whole < 3) && i < 80 {
        let seed = (7 + i).to_string();
        let mut child = Command::new(BIN)
            .args(again(&seed))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(0.3 + 1.3 * rng.uniform()));
        let _ = child.kill();
        child.wait().unwrap();
        let seeds: Vec<u64> = (5..=7 + i).collect();
        whole += assert_whole_results(&f, &out, &seeds) as usize;
        i += 1;
    }
    assert!(whole > 0, "no kill left any results: the test lost its aim");
    // A run that finishes sweeps what the killed ones left beside the folder.
    let last = again("99");
    assert!(l0(&last).status.success());
    let left: Vec<String> = fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.l0-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Sends `signal` (e.g. "INT") to a process.
fn signal(pid: u32, signal: &str) {
    let s = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn ctrl_c_checkpoints_and_the_printed_command_resumes_bit_for_bit() {
    let f = problem("sigint", 30, 400, 0.2, None);
    let (full, part) = (f.dir.join("full"), f.dir.join("part"));
    let extra = ["--epochs", "8000", "--log-every", "200"];
    let mut child = full_run_and_a_started_one(&f, &full, &part, &extra, Stdio::piped());
    let log = part.join("log.csv");
    let start = Instant::now();
    // Wait until training has logged an epoch past the first.
    while fs::read_to_string(&log).map_or(0, |t| t.lines().count()) <= 1 + f.rows {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "finished too early");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child.id(), "INT");
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let saved = l0::checkpoint::Checkpoint::read(&part.join("checkpoint.l0ck")).unwrap();
    let step = saved.state.step;
    assert!(step > 200 && step < 8000, "{step}");
    let ckpt = part.join("checkpoint.l0ck");
    let command = format!(
        "l0 calibrate --resume {} --device cpu --threads 1",
        part.display()
    );
    assert!(
        err.ends_with(&format!(
            "interrupted: stopped after epoch {step} of 8000; checkpoint written to {}\nresume with: {command}\n",
            ckpt.display()
        )),
        "{err}"
    );
    for r in RESULTS {
        assert!(!part.join(r).exists(), "{r} written by an interrupted run");
    }

    // The printed command, as given: the inputs come from the checkpoint.
    let words: Vec<&str> = command.split(' ').skip(1).collect();
    let o = l0(&words);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains(&format!("resuming at epoch {step}")), "{err}");
    for name in ["weights.npy", "log.csv"] {
        assert_eq!(
            fs::read(full.join(name)).unwrap(),
            fs::read(part.join(name)).unwrap(),
            "{name}: the resumed run differs from the uninterrupted one"
        );
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    // The demo's epochs (~20 ms on one thread) leave time for the second
    // signal to land inside the epoch the first one is waiting for; the
    // two signals may still merge into one on a busy machine, so up to
    // three tries.
    let dir = scratch("sigint2");
    for attempt in 0..3 {
        let out = dir.join(format!("out{attempt}"));
        let mut child = Command::new(BIN)
            .args(["calibrate", "--epochs", "1000000", "--threads", "1"])
            .args(["--device", "cpu", "--progress-every", "1", "--out", p(&out)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        while !lines.next().unwrap().unwrap().starts_with("Epoch") {}
        signal(child.id(), "INT");
        std::thread::sleep(Duration::from_millis(3));
        signal(child.id(), "INT");
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{rest:?}");
        if rest.iter().any(|l| l.starts_with("interrupted:")) {
            continue; // the signals merged: the first alone stopped the run
        }
        assert!(!out.join("checkpoint.l0ck").exists());
        return;
    }
    panic!("the second SIGINT never arrived within an epoch");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    let f = problem("sigterm", 30, 400, 0.2, None);
    let out = f.dir.join("out");
    let mut args = f.base_args(&out);
    args.extend(["--epochs", "100000", "--log-every", "100"]);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once training has begun (a first log row), SIGTERM stops it after
    // the epoch, with a checkpoint; before, it exits at once.
    assert!(wait_for_log_row(&out.join("log.csv"), &mut child));
    signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(out.join("checkpoint.l0ck").exists());
}

#[test]
fn input_mistakes_get_their_own_message() {
    let f = problem("mistakes", 4, 6, 0.5, None);
    let out = f.dir.join("out");
    let run = |matrix: &Path, targets: &Path, extra: &[&str]| {
        let mut a = vec![
            "calibrate",
            "--matrix",
            p(matrix),
            "--targets",
            p(targets),
            "--out",
            p(&out),
            "--epochs",
            "5",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let fails_with = |args: Vec<String>| fails(&args);

    // Targets that match M's columns: M was given transposed.
    let six = f.dir.join("six.npy");
    write_npy_f64(&six, &[1.0; 6]).unwrap();
    assert_eq!(
        fails_with(run(&f.matrix, &six, &[])),
        format!(
            "error: {}: M has 4 rows and 6 columns, and the 6 targets match its columns: M looks transposed (it must be targets x records; save M.T)",
            f.matrix.display()
        )
    );

    // No target left in the loss: every row all zero, or all excluded.
    let zero = f.dir.join("zero.mtx");
    fs::write(
        &zero,
        "%%MatrixMarket matrix coordinate real general\n4 6 0\n",
    )
    .unwrap();
    assert_eq!(
        fails_with(run(&zero, &f.targets, &[])),
        "error: no target is left in the loss: 4 of 4 have an all-zero matrix row and 0 are excluded by --exclude-targets; there is nothing to fit"
    );
    assert_eq!(
        fails_with(run(
            &f.matrix,
            &f.targets,
            &["--exclude-targets", "target_0,target_1,target_2,target_3"]
        )),
        "error: no target is left in the loss: 0 of 4 have an all-zero matrix row and 4 are excluded by --exclude-targets; there is nothing to fit"
    );
    assert!(!out.exists());

    // A target below -1 under relative loss: one warning naming it.
    let neg = f.dir.join("neg.npy");
    write_npy_f64(&neg, &[5.0, -3.0, 2.0, -0.5]).unwrap();
    let args = run(&f.matrix, &neg, &["--loss", "relative"]);
    let o = l0(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("warning: --loss"))
        .collect();
    assert_eq!(
        warnings,
        ["warning: --loss relative divides each error by y + 1, which is negative for 1 target(s) below -1, so their rel_error has the opposite sign: target_1"]
    );
}

#[test]
fn resume_finds_the_recorded_inputs_and_names_a_missing_one() {
    let (f, run) = checkpointed_run("inputs", "40");
    // Only --resume: matrix, targets, groups and names from the checkpoint.
    let o = l0(&["calibrate", "--resume", p(&run), "--epochs", "60"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warnings,
        ["warning: epochs changed since the checkpoint: 40 -> 60"]
    );
    assert!(
        err.contains(&format!(
            "l0 calibrate: {} with targets {}",
            f.matrix.display(),
            f.targets.display()
        )),
        "{err}"
    );
    assert_eq!(summary(&run)["epochs"], 60);
    assert_eq!(csv_rows(&run.join("targets.csv"))[1][0], "t0");
    // A checkpoint without recorded inputs (an older l0's) asks for them.
    let ckpt = run.join("checkpoint.l0ck");
    let mut old = l0::checkpoint::Checkpoint::read(&ckpt).unwrap();
    let kept = old.settings.clone();
    old.settings.retain(|(n, _)| !n.starts_with("input."));
    old.write(&ckpt).unwrap();
    assert_eq!(
        fails(&["calibrate", "--resume", p(&run), "--epochs", "80"]),
        format!(
            "error: {}: the checkpoint was not made for the built-in demo and does not record its input files: give --matrix and --targets (and --groups) of its run",
            ckpt.display()
        )
    );
    old.settings = kept;
    old.write(&ckpt).unwrap();

    // A recorded input that has gone is named.
    fs::rename(&f.targets, f.dir.join("moved.npy")).unwrap();
    let e = fails(&["calibrate", "--resume", p(&run), "--epochs", "80"]);
    assert!(
        e.starts_with(&format!(
            "error: {}: cannot read file: ",
            f.targets.display()
        )),
        "{e}"
    );
}

#[test]
fn target_names_may_have_a_header_and_predict_reads_weights_csv() {
    let f = problem("header", 5, 30, 0.4, None);
    let names = f.dir.join("named.csv");
    fs::write(&names, "target_name\na\nb\nc\nd\ne\n").unwrap();
    let out = f.dir.join("out");
    calibrate_to_last_line(
        &f,
        "out",
        &f.targets,
        &["--target-names", p(&names), "--epochs", "20"],
    );
    let t = csv_rows(&out.join("targets.csv"));
    let got: Vec<&str> = t[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);

    let predict = |weights: &str| {
        let o = l0(&["predict", "--matrix", p(&f.matrix), "--weights", weights]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let from_csv = predict(p(&out.join("weights.csv")));
    assert_eq!(from_csv, predict(p(&out.join("weights.npy"))));
    let est: Vec<String> = t[1..].iter().map(|r| r[1].clone()).collect();
    let lines: Vec<f64> = from_csv.lines().map(|l| l.parse().unwrap()).collect();
    for (q, e) in est.iter().enumerate() {
        assert_eq!(lines[q], e.parse::<f64>().unwrap());
    }
    // A several-column CSV without a weight column is named as such.
    let bad = f.dir.join("bad.csv");
    fs::write(&bad, "column,w\n0,1.0\n").unwrap();
    assert_eq!(
        fails(&["predict", "--matrix", p(&f.matrix), "--weights", p(&bad)]),
        format!(
            "error: {}: line 1: no 'weight' column among column, w",
            bad.display()
        )
    );
}

/// Runs calibrate on `f`'s matrix with `targets` and `extra` flags into a
/// fresh folder; returns the last line of stderr and the summary.
fn calibrate_to_last_line(
    f: &Files,
    name: &str,
    targets: &Path,
    extra: &[&str],
) -> (String, serde_json::Value) {
    let out = f.dir.join(name);
    let mut args = vec![
        "calibrate",
        "--matrix",
        p(&f.matrix),
        "--targets",
        p(targets),
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        p(&out),
    ];
    args.extend_from_slice(extra);
    let o = l0(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    (err.lines().last().unwrap().to_string(), summary(&out))
}

/// The far-from-targets warning for the mean |rel err| in `s`.
fn far(s: &serde_json::Value, cause: &str) -> String {
    format!(
        "warning: the fit is far from its targets (mean |rel err| {:.1}% > 25%): {cause}",
        100.0 * s["mean_abs_rel_err"].as_f64().unwrap()
    )
}

#[test]
fn a_fit_far_from_its_targets_says_why() {
    let f = problem("far", 6, 40, 0.5, None);
    // Targets from 7 to 1e6 under mse.
    let big = f.dir.join("big.npy");
    write_npy_f64(&big, &[10.0, 1e3, 1e6, 50.0, 2e4, 7.0]).unwrap();
    let (line, s) = calibrate_to_last_line(&f, "mse", &big, &["--epochs", "50"]);
    assert_eq!(
        line,
        far(&s, "--loss mse lets the largest targets dominate (these span more than a factor 100): use --loss relative")
    );

    let relative = ["--loss", "relative", "--epochs", "200", "--lr", "0.05"];
    // An L2 penalty far above the data loss at the end.
    let mut args = relative.to_vec();
    args.extend(["--lambda-l0", "0", "--lambda-l2", "100"]);
    let (line, s) = calibrate_to_last_line(&f, "l2", &f.targets, &args);
    let (loss, data) = (
        s["loss"].as_f64().unwrap(),
        s["data_loss"].as_f64().unwrap(),
    );
    assert_eq!(
        line,
        far(
            &s,
            &format!(
                "the --lambda-l2 penalty ({:.4}) outweighs the data loss ({data:.4}): lower --lambda-l2 (now 100.0)",
                loss - data
            )
        )
    );

    // An L0 penalty that has closed the gates.
    let mut args = relative.to_vec();
    args.extend(["--lambda-l0", "5"]);
    let (line, s) = calibrate_to_last_line(&f, "l0", &f.targets, &args);
    let t = csv_rows(&f.dir.join("l0/targets.csv"));
    let short = t[1..]
        .iter()
        .filter(|r| r[1].parse::<f64>().unwrap() < r[2].parse::<f64>().unwrap())
        .count() as f64
        / f.rows as f64;
    assert_eq!(
        line,
        far(
            &s,
            &format!(
                "{:.0}% of the estimates fall short of their targets and {:.0}% of the weights are zero: the --lambda-l0 penalty holds them down; lower --lambda-l0 (now 5.0)",
                100.0 * short,
                100.0 * s["sparsity"].as_f64().unwrap()
            )
        )
    );

    // Too few, too small steps from weights far too small.
    let args = [
        "--loss",
        "relative",
        "--epochs",
        "20",
        "--lambda-l0",
        "0",
        "--init-weights",
        "0.01",
    ];
    let (line, s) = calibrate_to_last_line(&f, "slow", &f.targets, &args);
    assert_eq!(
        line,
        far(
            &s,
            "the fit has not converged: raise --epochs (now 20) or --lr (now 0.01)"
        )
    );

    // A good fit has no warning.
    let args = [
        "--loss",
        "relative",
        "--epochs",
        "600",
        "--lr",
        "0.05",
        "--lambda-l0",
        "1e-6",
    ];
    let (line, s) = calibrate_to_last_line(&f, "good", &f.targets, &args);
    assert!(s["mean_abs_rel_err"].as_f64().unwrap() < 0.25, "{s}");
    assert!(line.starts_with("         Weight dist"), "{line}");
}

#[test]
fn target_weights_and_concentration_flags() {
    let f = problem("guards", 6, 80, 0.4, None);
    let out = f.dir.join("out");
    let tw = |name: &str, v: &[f64]| {
        let path = f.dir.join(name);
        write_npy_f64(&path, v).unwrap();
        path
    };
    let with = |extra: &[&str]| f.args_with(&out, &["--epochs", "40", "--overwrite"], extra);
    let run = |args: Vec<String>| {
        let o = succeeds(&args);
        (
            npy(&out.join("weights.npy")),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    // A zero loss weight is the same fit as leaving the target out.
    let zero = tw("zero.npy", &[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    let (w_zero, stdout) = run(with(&["--target-weights", p(&zero)]));
    let (w_excl, _) = run(with(&["--exclude-targets", "t2"]));
    assert_eq!(w_zero, w_excl);
    assert!(
        stdout.contains("concentration: effective sample size "),
        "{stdout}"
    );

    let short = tw("short.npy", &[1.0; 5]);
    assert_eq!(
        fails(&with(&["--target-weights", p(&short)])),
        format!(
            "error: {}: expected 6 target weights (one per target), found 5",
            short.display()
        )
    );
    let nan = tw("nan.npy", &[1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(
        fails(&with(&["--target-weights", p(&nan)])),
        format!(
            "error: {}: non-finite value in target weights at index 1: NaN",
            nan.display()
        )
    );
    let negative = tw("negative.npy", &[1.0, 1.0, 1.0, -2.0, 1.0, 1.0]);
    assert_eq!(
        fails(&with(&["--target-weights", p(&negative)])),
        format!(
            "error: {}: target weight 3 is -2; each must be a finite number >= 0",
            negative.display()
        )
    );
    assert_eq!(
        fails(&with(&["--warn-top1pct", "1.5"])),
        "error: --warn-top1pct must be a share between 0 and 1, got 1.5"
    );
}

#[test]
fn weight_caps_hold_and_name_the_targets_they_block() {
    let f = problem("caps", 6, 80, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| f.args_with(&out, &["--epochs", "60", "--overwrite"], extra);
    let run = |args: Vec<String>| {
        let o = succeeds(&args);
        (npy(&out.join("weights.npy")), stderr(&o))
    };
    let (free, _) = run(with(&[]));
    let cap = free.iter().copied().fold(0.0, f64::max) / 2.0;
    let cap_text = format!("{cap:?}");
    let (w, _) = run(with(&["--max-weight", &cap_text]));
    assert!(w.iter().all(|&x| x <= cap), "{w:?}");
    assert_eq!(summary(&out)["settings"]["max_weight"], cap);
    // Caps so low that no target can be reached.
    let (w, err) = run(with(&["--max-weight", "0.001"]));
    assert!(w.iter().all(|&x| x <= 0.001));
    assert!(
        err.contains("warning: the weight caps make 6 target(s) unreachable (even with every record at its cap the estimate cannot get there), so the fit is the best capped one: t0, t1, t2, t3, t4, t5"),
        "{err}"
    );
    // A ratio cap against per-record design weights.
    let design = f.dir.join("design.npy");
    let d: Vec<f64> = (0..80).map(|i| 0.5 + (i % 3) as f64 * 0.25).collect();
    write_npy_f64(&design, &d).unwrap();
    let (w, _) = run(with(&[
        "--init-weights",
        p(&design),
        "--max-weight-ratio",
        "1.5",
    ]));
    assert!(w.iter().zip(&d).all(|(w, d)| *w <= 1.5 * d));
    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--max-weight", "-1"]),
        "error: --max-weight must be a finite number > 0, got -1"
    );
    assert_eq!(
        bad(&["--max-weight-ratio", "0.5"]),
        "error: --max-weight-ratio must be >= 1 with gates, got 0.5"
    );
}

#[test]
fn weight_floors_and_a_conserved_total_hold_in_the_outputs() {
    let f = problem("floors", 6, 80, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| f.args_with(&out, &["--epochs", "60", "--overwrite"], extra);
    let design = f.dir.join("design.npy");
    let d: Vec<f64> = (0..80).map(|i| 0.5 + (i % 3) as f64 * 0.25).collect();
    write_npy_f64(&design, &d).unwrap();
    let o = succeeds(&with(&[
        "--init-weights",
        p(&design),
        "--min-weight-ratio",
        "0.3",
        "--conserve-total",
    ]));
    let w = npy(&out.join("weights.npy"));
    let total: f64 = d.iter().sum();
    assert!(
        (w.iter().sum::<f64>() - total).abs() <= 1e-9 * total,
        "{}",
        stderr(&o)
    );
    assert!(w.iter().zip(&d).all(|(w, d)| *w == 0.0 || *w >= 0.3 * d));
    let s = summary(&out);
    assert_eq!(s["settings"]["conserve_total"], "initial");
    assert_eq!(s["settings"]["min_weight_ratio"], 0.3);
    // Lower bounds whose kept records alone exceed the total: said, and
    // every kept weight at its bound.
    let o = succeeds(&with(&[
        "--init-weights",
        p(&design),
        "--min-weight-ratio",
        "1.2",
        "--conserve-total",
    ]));
    let w = npy(&out.join("weights.npy"));
    let kept = w.iter().filter(|&&x| x > 0.0).count();
    let at_floor: f64 = w
        .iter()
        .zip(&d)
        .filter(|(w, _)| **w > 0.0)
        .map(|(_, d)| 1.2 * d)
        .sum();
    assert!((w.iter().sum::<f64>() - at_floor).abs() <= 1e-9 * at_floor);
    assert!(
        stderr(&o).contains(&format!(
            "warning: the conserved total 59.75 is out of reach: the {kept} kept records sum to {} with every weight at their lower bounds",
            w.iter().sum::<f64>()
        )),
        "{}",
        stderr(&o)
    );
    // A number as the total; in a record budget's search and a refit too.
    for extra in [
        &["--conserve-total", "25.5"][..],
        &["--conserve-total", "25.5", "--target-records", "30"],
        &["--conserve-total", "25.5", "--refit"],
    ] {
        let o = succeeds(&with(extra));
        let w = npy(&out.join("weights.npy"));
        assert!(
            (w.iter().sum::<f64>() - 25.5).abs() <= 1e-9 * 25.5,
            "{extra:?}: {}",
            stderr(&o)
        );
    }
    // A refit whose kept records cannot reach the total within their caps
    // ends at the caps and says so (the refit does not fail after the fit).
    let o = succeeds(&with(&[
        "--max-weight-ratio",
        "2",
        "--conserve-total",
        "150",
        "--lambda-l0",
        "0.05",
        "--refit",
    ]));
    let w = npy(&out.join("weights.npy"));
    let kept = w.iter().filter(|&&x| x > 0.0).count();
    assert!(kept < 75, "{kept} kept: the caps would reach the total");
    assert!(w.iter().all(|&x| x == 0.0 || x == 2.0), "{w:?}");
    assert!(
        stderr(&o).contains(&format!(
            "warning: the conserved total 150 is out of reach: the {kept} kept records sum to {} with every weight at their caps",
            2 * kept
        )),
        "{}",
        stderr(&o)
    );
    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--conserve-total", "1000", "--max-weight", "2"]),
        "error: --conserve-total 1000 is above what the weight caps allow: the 80 records' caps sum to 160"
    );
    assert_eq!(
        bad(&["--min-weight-ratio", "3", "--max-weight-ratio", "2"]),
        "error: --min-weight-ratio puts record 0's lower bound 3 above its cap 2 (--max-weight / --max-weight-ratio)"
    );
    assert_eq!(
        bad(&["--conserve-total", "lots"]),
        "error: --conserve-total must be a number (or no value: the sum of the initial weights), got 'lots'"
    );
    assert_eq!(
        bad(&["--min-weight-ratio", "0"]),
        "error: --min-weight-ratio must be a finite number > 0, got 0"
    );
}

#[test]
fn holdout_targets_are_marked_and_reported() {
    let f = problem("holdout", 9, 120, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| {
        f.args_with(
            &out,
            &["--epochs", "40", "--overwrite", "--log-every", "20"],
            extra,
        )
    };
    let run = |args: Vec<String>| {
        let o = succeeds(&args);
        (
            npy(&out.join("weights.npy")),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr(&o),
        )
    };
    // Group 1 (targets 1, 4, 7) held out: the same weights as excluding it.
    let (w_excl, _, _) = run(with(&["--exclude-targets", "t1,t4,t7"]));
    let (w_held, stdout, err) = run(with(&["--holdout-groups", "1"]));
    assert_eq!(w_held, w_excl);
    assert!(stdout.contains("holdout: mean |rel err| "), "{stdout}");
    assert!(err.contains("holdout_mean_error="), "{err}");
    let t = csv_rows(&out.join("targets.csv"));
    assert_eq!(t[0][8], "holdout");
    let rel: Vec<f64> = t[1..].iter().map(|r| r[6].parse().unwrap()).collect();
    for (q, row) in t[1..].iter().enumerate() {
        assert_eq!(row[8] == "true", q % 3 == 1, "row {q}");
    }
    let s = summary(&out);
    let held = [1, 4, 7].map(|q| rel[q]);
    let want_mean = held.iter().sum::<f64>() / 3.0;
    let want_max = held.iter().copied().fold(0.0, f64::max);
    assert!((s["holdout_mean_abs_rel_err"].as_f64().unwrap() - want_mean).abs() < 1e-12);
    assert_eq!(s["holdout_max_abs_rel_err"].as_f64().unwrap(), want_max);
    assert_eq!(s["targets_holdout"], 3);
    assert_eq!(s["targets_included"], 6);
    let log = csv_rows(&out.join("log.csv"));
    assert_eq!(log[0].last().unwrap(), "holdout");
    assert_eq!(log[2].last().unwrap(), "true");
    assert_eq!(log[1].last().unwrap(), "false");

    // A fraction: stratified by group, and seeded.
    run(with(&["--holdout-fraction", "0.34", "--holdout-seed", "3"]));
    let t = csv_rows(&out.join("targets.csv"));
    for g in 0..3 {
        let n = (0..9)
            .filter(|q| q % 3 == g && t[q + 1][8] == "true")
            .count();
        assert_eq!(n, 1, "group {g}");
    }

    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--holdout-groups", "5"]),
        "error: --holdout-groups: holdout group 5 is not a group of any target"
    );
    assert_eq!(
        bad(&["--holdout-groups", "x"]),
        "error: --holdout-groups: expected integer group ids, got 'x'"
    );
    assert_eq!(
        bad(&["--holdout-fraction", "1.5"]),
        "error: --holdout-fraction: the holdout fraction must be in (0, 1), got 1.5"
    );
    assert_eq!(
        bad(&["--holdout-fraction", "0.2", "--holdout-groups", "1"]),
        "error: --holdout-groups and --holdout-fraction exclude each other: give one"
    );
    assert_eq!(
        bad(&["--holdout-seed", "2"]),
        "error: --holdout-seed needs --holdout-fraction"
    );
    assert_eq!(
        bad(&["--holdout-groups", "0,1,2"]),
        "error: --holdout-groups: the holdout holds out all 9 targets, leaving none to fit"
    );
}

#[test]
fn refit_keeps_the_selected_records_and_reports_the_fit_before_it() {
    let f = problem("refit", 9, 150, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| {
        f.args_with(
            &out,
            &[
                "--epochs",
                "200",
                "--lambda-l0",
                "0.02",
                "--loss",
                "relative",
                "--overwrite",
            ],
            extra,
        )
    };
    let run = |args: Vec<String>| {
        let o = succeeds(&args);
        (npy(&out.join("weights.npy")), stderr(&o))
    };
    let (w_l0, _) = run(with(&[]));
    let (w_refit, err) = run(with(&["--refit"]));
    assert!(err.contains("refit: "), "{err}");
    assert!(err.contains("refit Epoch  100:"), "{err}");
    let kept = err.lines().find(|l| l.starts_with("refit: loss ")).unwrap();
    assert!(
        kept.ends_with(", the lowest checked (start, every 10 epochs, end): kept epoch 100 of 100"),
        "{kept}"
    );
    for (i, (a, b)) in w_l0.iter().zip(&w_refit).enumerate() {
        assert_eq!(*a == 0.0, *b == 0.0, "record {i}");
    }
    let s = summary(&out);
    let before = &s["before_refit"];
    let active = w_l0.iter().filter(|&&w| w > 0.0).count();
    assert_eq!(before["active"], active);
    assert_eq!(s["active"], active);
    assert_eq!(before["refit_epochs"], 100);
    let (b, a) = (
        before["rel_loss"].as_f64().unwrap(),
        s["rel_loss"].as_f64().unwrap(),
    );
    assert!(a < b, "rel_loss {b} -> {a}");
    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--refit-epochs", "5"]),
        "error: --refit-epochs needs --refit"
    );
    assert_eq!(
        bad(&["--refit", "--refit-epochs", "0"]),
        "error: --refit-epochs: must be a whole number of at least 1, got '0'"
    );
}

/// The attribute `name` of an SVG element's text.
fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = element.find(&key).unwrap() + key.len();
    &element[start..start + element[start..].find('"').unwrap()]
}

/// The elements `<tag ...>` of an SVG text.
fn elements<'a>(svg: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    svg.match_indices(&open)
        .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap()])
        .collect()
}

#[test]
fn sweep_models_equal_single_fits_and_the_plot_shows_them() {
    let f = problem("sweep", 9, 150, 0.4, None);
    let out = f.dir.join("out");
    let single = f.dir.join("single");
    let common = |out: &Path| {
        let mut a: Vec<String> = f.base_args(out)[1..]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--epochs", "60", "--loss", "relative", "--overwrite"].map(String::from));
        a
    };
    let run = |args: Vec<String>| succeeds(&args);
    let lambdas = ["0.0001", "0.003", "0.05"];
    let mut a = vec!["sweep".to_string()];
    a.extend(common(&out));
    a.extend([
        "--lambda-l0".into(),
        lambdas.join(","),
        "--holdout-groups".into(),
        "2".into(),
    ]);
    let o = run(a);
    let err = stderr(&o);
    assert!(err.contains("model 3/3 (lambda_l0=0.05): Epoch"), "{err}");
    for (k, l) in lambdas.iter().enumerate() {
        let mut a = vec!["calibrate".to_string()];
        a.extend(common(&single));
        a.extend(["--lambda-l0", l, "--holdout-groups", "2"].map(String::from));
        run(a);
        assert_eq!(
            npy(&out.join(format!("weights_{k}.npy"))),
            npy(&single.join("weights.npy")),
            "model {k}"
        );
    }
    let csv = csv_rows(&out.join("sweep.csv"));
    assert_eq!(
        csv[0].join(","),
        "lambda_l0,active,sparsity,loss,rel_loss,mean_abs_rel_err,max_abs_rel_err,within_1pct,within_5pct,within_10pct,within_25pct,holdout_mean_abs_rel_err,holdout_max_abs_rel_err"
    );
    assert_eq!(csv.len(), 4);
    let actives: Vec<usize> = csv[1..].iter().map(|r| r[1].parse().unwrap()).collect();
    for (k, r) in csv[1..].iter().enumerate() {
        assert_eq!(
            r[0].parse::<f64>().unwrap(),
            lambdas[k].parse::<f64>().unwrap()
        );
        let w = npy(&out.join(format!("weights_{k}.npy")));
        assert_eq!(actives[k], w.iter().filter(|&&x| x > 0.0).count());
    }
    let s = summary(&out);
    assert_eq!(s["models"].as_array().unwrap().len(), 3);
    assert_eq!(s["settings"]["lambda_l0"][2], 0.05);

    // The plot: axes, one labelled point per model and series.
    let svg = fs::read_to_string(out.join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        elements(&svg, "path")
            .iter()
            .filter(|e| attr(e, "class") == "axes")
            .count(),
        1
    );
    let series: Vec<&str> = elements(&svg, "polyline")
        .iter()
        .map(|e| attr(e, "data-name"))
        .collect();
    assert_eq!(
        series,
        ["mean |rel err|", "max |rel err|", "holdout mean |rel err|"]
    );
    let points = elements(&svg, "circle");
    assert_eq!(points.len(), 9);
    let texts: Vec<&str> = svg
        .match_indices("<text ")
        .map(|(i, _)| {
            &svg[svg[i..].find('>').unwrap() + i + 1..svg[i..].find("</text>").unwrap() + i]
        })
        .collect();
    for l in [
        "λ=1e-4",
        "λ=0.003",
        "λ=0.05",
        "active records (log scale)",
        "relative error",
    ] {
        assert!(texts.contains(&l), "{l} in {texts:?}");
    }
    // Larger lambda, fewer records: further left (x grows with log active).
    let xs: Vec<f64> = points[..3]
        .iter()
        .map(|e| attr(e, "cx").parse().unwrap())
        .collect();
    for k in 1..3 {
        assert_eq!(xs[k] <= xs[k - 1], actives[k] <= actives[k - 1]);
    }

    let bad = |extra: &[&str]| {
        let mut a = vec!["sweep".to_string()];
        a.extend(common(&out));
        a.extend(extra.iter().map(|s| s.to_string()));
        fails(&a)
    };
    assert_eq!(
        bad(&[]),
        "error: l0 sweep needs --lambda-l0 A,B,... or --lambda-grid LO:HI:N"
    );
    assert_eq!(
        bad(&["--lambda-grid", "1e-3:1e-1"]),
        "error: --lambda-grid: expected LO:HI:N (two numbers and a count), got '1e-3:1e-1'"
    );
    assert_eq!(
        bad(&["--lambda-grid", "0:1:3"]),
        "error: --lambda-grid: a lambda grid needs 0 < LO <= HI, got 0 and 1"
    );
    assert_eq!(
        bad(&["--lambda-grid", "1e-3:1e-1:3", "--lambda-l0", "0.1"]),
        "error: --lambda-l0 and --lambda-grid exclude each other: give one"
    );
    assert_eq!(
        bad(&["--lambda-l0", "0.1,-2"]),
        "error: --lambda-l0: every lambda_l0 must be a finite number >= 0, got -2"
    );
    assert_eq!(
        bad(&["--lambda-l0", "0.1", "--target-records", "20"]),
        "error: --target-records is not supported by l0 sweep"
    );
    let mut a = vec!["calibrate".to_string()];
    a.extend(common(&out));
    a.extend(["--lambda-l0", "0.1,0.2"].map(String::from));
    assert_eq!(
        fails(&a),
        "error: --lambda-l0: l0 calibrate fits one value; l0 sweep trains one model per value of a list"
    );
}

#[test]
fn sweep_refit_models_equal_calibrate_refits_and_keep_their_zeros() {
    let f = problem("sweep-refit", 9, 150, 0.4, None);
    let (out, plain, single) = (f.dir.join("out"), f.dir.join("plain"), f.dir.join("single"));
    let args = |cmd: &str, out: &Path, extra: &[&str]| {
        let mut a = vec![cmd.to_string()];
        a.extend(f.base_args(out)[1..].iter().map(|s| s.to_string()));
        a.extend(["--epochs", "60", "--loss", "relative", "--overwrite"].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let o = succeeds(&a);
        stderr(&o)
    };
    let lambdas = ["0.0001", "0.01", "50"];
    let list = lambdas.join(",");
    let err = run(args("sweep", &out, &["--lambda-l0", &list, "--refit"]));
    run(args("sweep", &plain, &["--lambda-l0", &list]));
    assert!(err.contains("model 2/3 refit: "), "{err}");
    assert!(
        err.contains("warning: model 3/3 (lambda_l0=50.0) kept no record: nothing to refit, its weights stay 0"),
        "{err}"
    );
    let csv = csv_rows(&out.join("sweep.csv"));
    let before = csv_rows(&plain.join("sweep.csv"));
    assert_eq!(
        csv[0].join(","),
        "lambda_l0,active,sparsity,loss,rel_loss,mean_abs_rel_err,max_abs_rel_err,within_1pct,within_5pct,within_10pct,within_25pct,before_refit_mean_abs_rel_err,before_refit_max_abs_rel_err,before_refit_active"
    );
    assert_eq!(before[0].len(), 11);
    let s = summary(&out);
    for (k, l) in lambdas.iter().enumerate() {
        let w = npy(&out.join(format!("weights_{k}.npy")));
        let l0_w = npy(&plain.join(format!("weights_{k}.npy")));
        // Zeros stay zero, and nothing else becomes zero.
        for (a, b) in w.iter().zip(&l0_w) {
            assert_eq!(*a == 0.0, *b == 0.0, "model {k}");
        }
        let active = l0_w.iter().filter(|&&x| x > 0.0).count();
        // The L0 fit's figures are the plain sweep's.
        assert_eq!(
            csv[k + 1][11..],
            [5, 6, 1].map(|c| before[k + 1][c].clone())
        );
        assert_eq!(csv[k + 1][1], active.to_string());
        let b = &s["models"][k]["before_refit"];
        assert_eq!(b["active"], active);
        assert_eq!(b["refit_epochs"], if active > 0 { 30 } else { 0 });
        if active == 0 {
            continue;
        }
        // A refit moves the weights; they are exactly calibrate --refit's.
        assert_ne!(w, l0_w, "model {k}");
        run(args("calibrate", &single, &["--lambda-l0", l, "--refit"]));
        assert_eq!(w, npy(&single.join("weights.npy")), "model {k}");
        let one = summary(&single);
        assert_eq!(one["before_refit"]["active"], active);
        assert_eq!(s["models"][k]["mean_abs_rel_err"], one["mean_abs_rel_err"]);
    }
    assert_eq!(s["settings"]["refit"], true);
}

#[test]
fn a_record_budget_is_met_and_reported_in_the_summary() {
    use l0::budget::batch_cost;
    let f = problem("budget", 9, 150, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| f.args_with(&out, &["--loss", "relative", "--overwrite"], extra);
    let run = |extra: &[&str]| {
        let args = with(extra);
        let o = succeeds(&args);
        let out_text = String::from_utf8_lossy(&o.stdout).into_owned();
        (npy(&out.join("weights.npy")), stderr(&o), out_text)
    };
    let (w, err, said) = run(&[
        "--epochs",
        "200",
        "--target-records",
        "40",
        "--records-tolerance",
        "0.1",
        "--refit",
    ]);
    assert!(
        err.contains("record budget: 40 records within 10%"),
        "{err}"
    );
    let s = summary(&out);
    let b = &s["budget"];
    let active = w.iter().filter(|&&x| x > 0.0).count();
    assert!((36..=44).contains(&active), "active {active}");
    assert_eq!(s["active"], active);
    assert_eq!(b["target_records"], 40);
    assert_eq!(b["tolerance"], 0.1);
    assert_eq!(b["met"], true);
    let lambda = b["lambda_l0"].as_f64().unwrap();
    assert_eq!(s["lambda_l0"], lambda);
    assert_eq!(s["settings"]["lambda_l0"], lambda);
    // A bracket of 9 models x 10 epochs, 8 narrowing models to epoch 10
    // (the adaptive look) and 20; no gate has closed enough by then (the
    // counts were still moving), so the slow schedule: the 8 go on to 40,
    // 4 of them are continued to 120 and 1 to 200, then at most one
    // refining model (the estimated cost stays within 3.5 fits).
    let batches = b["batches"].as_array().unwrap();
    let stage = |name: &str, models: u64, epochs: u64| serde_json::json!({"stage": name, "models": models, "epochs": epochs});
    assert_eq!(
        batches[..6],
        [
            stage("bracket", 9, 10),
            stage("narrow", 8, 10),
            stage("narrow", 8, 10),
            stage("narrow", 8, 20),
            stage("continue", 4, 80),
            stage("continue", 1, 80)
        ]
    );
    assert!(
        said.contains(
            "record budget: the counts were still moving at the first drop: slow schedule"
        ),
        "{said}"
    );
    assert_eq!(b["settled"], false);
    let refined = batches.len() as u64 - 6;
    assert!(refined <= 1, "{batches:?}");
    if refined == 1 {
        assert_eq!(batches[6], stage("refine", 1, 200));
    }
    assert_eq!(b["models_trained"], 17 + refined);
    let epochs = b["epochs_total"].as_u64().unwrap();
    assert_eq!(epochs, 9 * 10 + 8 * 40 + 4 * 80 + 80 + 200 * refined);
    assert_eq!(b["fits"], epochs as f64 / 200.0);
    assert_eq!(b["passes"], (210 + 200 * refined) as f64 / 200.0);
    let cost =
        0.05 * batch_cost(9) + 0.2 * batch_cost(8) + 0.4 * batch_cost(4) + 0.4 + refined as f64;
    let got = b["cost_fits"].as_f64().unwrap();
    assert!((got - cost).abs() < 1e-12, "{got} vs {cost}");
    assert!(err.contains("  narrow lambda_l0="), "{err}");
    assert!(err.contains("  continue lambda_l0="), "{err}");
    assert_eq!(s["before_refit"]["active"], active);
    // The same run with its lambda given is the same model.
    let given = format!("{lambda:?}");
    let (w_plain, _, _) = run(&["--epochs", "200", "--lambda-l0", &given, "--refit"]);
    assert_eq!(w, w_plain);
    // The range searched is the one given.
    let (_, err, _) = run(&[
        "--epochs",
        "2",
        "--target-records",
        "75",
        "--lambda-range",
        "1e-4:10",
    ]);
    assert!(err.contains(" over lambda_l0 1e-4..1e1; "), "{err}");
    assert!(err.contains("no lambda_l0 in 1e-4..1e1 tried in "), "{err}");
    // Two epochs close no gate: the nearest count is all 150 records.
    let (_, err, _) = run(&["--epochs", "2", "--target-records", "75"]);
    assert!(
        err.contains("warning: --target-records 75: no lambda_l0 in 1e-9..1e-1 tried in 1 full fit(s) keeps 75 records within 5%; nearest tried: 150 records at lambda_l0 1e-1; even the range's largest lambda_l0 keeps too many records: raise its top (--lambda-range LO:HI) or --epochs\n"),
        "{err}"
    );
    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--target-records", "0"]),
        "error: --target-records: a record budget must keep at least 1 record, got 0"
    );
    assert_eq!(
        bad(&["--target-records", "151"]),
        "error: --target-records: cannot keep 151 records: the matrix has only 150 columns"
    );
    assert_eq!(
        bad(&["--target-records", "50", "--records-tolerance", "0"]),
        "error: --records-tolerance: the records tolerance must be a number between 0 and 1 (exclusive), got 0"
    );
    assert_eq!(
        bad(&["--records-tolerance", "0.1"]),
        "error: --records-tolerance needs --target-records"
    );
    assert_eq!(
        bad(&["--lambda-range", "1e-6:1"]),
        "error: --lambda-range needs --target-records"
    );
    for range in ["1:0.1", "0:1", "1e-3", "a:b", "1e-3:inf"] {
        assert_eq!(
            bad(&["--target-records", "50", "--lambda-range", range]),
            format!("error: --lambda-range: expected LO:HI, two numbers with 0 < LO < HI (e.g. 1e-9:1e-1), got '{range}'")
        );
    }
    assert_eq!(
        bad(&["--target-records", "50", "--lambda-l0", "0.01"]),
        "error: --target-records searches lambda_l0 itself and does not take --lambda-l0"
    );
    let args = with(&["--target-records", "x"]);
    let o = l0(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: invalid value 'x' for '--target-records <K>'"));
}

#[test]
fn regress_lambda_path_chooses_on_a_validation_split() {
    use l0::{
        fit_path, refit_least_squares, PathParams, RegressionFitParams, RegressionParams,
        Selection, SparseMatrix,
    };
    let (dir, xp, yp, x, y) = regression_files("regress-path");
    let out = dir.join("out");
    let lambdas = [0.005, 0.05, 0.5, 5.0];
    let mut args = vec!["regress", "--x", p(&xp), "--y", p(&yp), "--out", p(&out)];
    args.extend([
        "--lambda-l0",
        "0.005,0.05,0.5,5",
        "--epochs",
        "800",
        "--lr",
        "0.05",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--select",
        "one-se",
        "--refit",
        "--validation-fraction",
        "0.25",
    ]);
    let o = l0(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("path.csv"));
    // The library's path on the same split: the last 30 rows validate.
    let xm = SparseMatrix::from_dense(120, 10, &x).unwrap();
    let params = RegressionParams {
        seed: Some(1),
        ..Default::default()
    };
    let opts = RegressionFitParams {
        lr: 0.05,
        epochs: 800,
        device: l0::Device::Cpu,
        threads: Some(1),
        report_every: Some(80),
        ..Default::default()
    };
    let path = PathParams {
        lambdas: lambdas.to_vec(),
        threshold: 0.01,
        refit: true,
        selection: Selection::OneStandardError,
        ..Default::default()
    };
    let (xt, xv) = (
        xm.select_rows(0..90).unwrap(),
        xm.select_rows(90..120).unwrap(),
    );
    let r = fit_path(&params, &opts, &path, &xt, &y[..90], &xv, &y[90..]).unwrap();
    let ls = refit_least_squares(&xm, &y, &r.points[r.best].support, true).unwrap();
    assert_eq!(npy(&out.join("coefficients.npy")), ls.coefficients);
    assert_eq!(r.points[r.best].support, vec![0, 4]);
    let rows = csv_rows(&out.join("path.csv"));
    assert_eq!(
        rows[0],
        [
            "lambda_l0",
            "selected",
            "val_mse",
            "val_se",
            "refitted",
            "chosen",
            "gic",
            "ebic"
        ]
    );
    assert_eq!(rows.len(), 5);
    for (row, pt) in rows[1..].iter().zip(&r.points) {
        assert_eq!(row[0].parse::<f64>().unwrap(), pt.lambda);
        assert_eq!(row[1], pt.support.len().to_string());
        assert_eq!(row[2].parse::<f64>().ok(), pt.val_mse);
    }
    assert_eq!(rows[1..].iter().filter(|r| r[5] == "true").count(), 1);
    let s = summary(&out);
    assert_eq!(s["lambda_l0"].as_f64().unwrap(), r.lambda);
    assert_eq!(s["selected"], 2);
    assert_eq!(s["path"]["select"], "one-se");
    assert_eq!(s["intercept"].as_f64().unwrap(), ls.intercept);
    // The defaults: EBIC over spliced least-squares refits, early stop; the
    // library's default path on the same split gives the same coefficients.
    let mut args = vec!["regress", "--x", p(&xp), "--y", p(&yp), "--out", p(&out)];
    args.extend([
        "--overwrite",
        "--lambda-l0",
        "0.005,0.05,0.5,5",
        "--lr",
        "0.05",
    ]);
    args.extend(["--seed", "1", "--device", "cpu", "--threads", "1"]);
    args.extend(["--validation-fraction", "0.25"]);
    let o = l0(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["path"]["select"], "ebic");
    assert_eq!(s["path"]["refit"], true);
    assert_eq!(s["path"]["splice"], true);
    assert_eq!(s["path"]["early_stop"], true);
    let opts = RegressionFitParams {
        epochs: 1000,
        report_every: Some(100),
        ..opts
    };
    let path = PathParams {
        lambdas: lambdas.to_vec(),
        ..Default::default()
    };
    let r = fit_path(&params, &opts, &path, &xt, &y[..90], &xv, &y[90..]).unwrap();
    assert_eq!(r.points[r.best].support, vec![0, 4]);
    assert_eq!(s["epochs"].as_u64().unwrap(), r.epochs);
    assert!(r.epochs < 1000);
    let ls = refit_least_squares(&xm, &y, &r.points[r.best].support, true).unwrap();
    assert_eq!(npy(&out.join("coefficients.npy")), ls.coefficients);
    let rows = csv_rows(&out.join("path.csv"));
    for (row, pt) in rows[1..].iter().zip(&r.points) {
        assert_eq!(row[7].parse::<f64>().unwrap(), pt.ebic.unwrap());
    }

    let bad = |extra: &[&str]| {
        let mut a = vec![
            "regress",
            "--x",
            p(&xp),
            "--y",
            p(&yp),
            "--out",
            p(&out),
            "--overwrite",
        ];
        a.extend_from_slice(extra);
        fails(&a)
    };
    assert_eq!(
        bad(&["--lambda-l0", "0.1,0.2", "--validation-fraction", "1"]),
        "error: --validation-fraction must be a share between 0 and 1 (exclusive), got 1"
    );
    assert_eq!(
        bad(&["--lambda-grid", "0.01:1:3", "--select", "best"]),
        "error: --select: expected ebic, gic, min-error or one-se, got 'best'"
    );
    assert_eq!(
        bad(&["--lambda-l0", "0.1", "--refit"]),
        "error: --refit applies to a lambda path: give --lambda-l0 A,B,... or --lambda-grid"
    );
    assert_eq!(
        bad(&["--lambda-l0", "0.1", "--no-splice"]),
        "error: --no-splice applies to a lambda path: give --lambda-l0 A,B,... or --lambda-grid"
    );
    assert_eq!(
        bad(&["--lambda-l0", "0.1,0.2", "--lambda-grid", "0.01:1:3"]),
        "error: --lambda-l0 and --lambda-grid exclude each other: give one"
    );
}

/// `l0 calibrate` prints where the run's time went: load, setup, training
/// and outputs, four non-negative numbers that add up to no more than the
/// process's wall time (with and without a refit, whose epochs count as
/// training).
#[test]
fn calibrate_prints_its_time_split() {
    let f = problem("timing", 12, 200, 0.3, None);
    for refit in [false, true] {
        let out = f.dir.join(format!("out-{refit}"));
        let mut args = f.base_args(&out);
        args.extend(["--epochs", "200"]);
        if refit {
            args.extend(["--refit", "--refit-epochs", "50"]);
        }
        let start = Instant::now();
        let o = l0(&args);
        let wall = start.elapsed().as_secs_f64();
        assert!(o.status.success(), "{}", stderr(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("time: ")).collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let parts: Vec<(&str, f64)> = lines[0]["time: ".len()..]
            .split(", ")
            .map(|p| {
                let (name, rest) = p.split_once(' ').unwrap();
                (name, rest.strip_suffix(" s").unwrap().parse().unwrap())
            })
            .collect();
        let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            ["load", "setup", "training", "outputs"],
            "{}",
            lines[0]
        );
        assert!(parts.iter().all(|p| p.1 >= 0.0), "{}", lines[0]);
        // Each is rounded to 0.01 s.
        let sum: f64 = parts.iter().map(|p| p.1).sum();
        assert!(sum <= wall + 0.02, "{} over {wall} s", lines[0]);
    }
}

#[test]
fn a_fit_without_groups_says_so_and_warns_when_a_few_targets_dominate() {
    let f = problem("few", 20, 150, 0.4, None);
    // Two targets no weighting can reach together with the rest.
    let mut y = f.y.clone();
    y[3] *= 4.0;
    y[11] *= 0.1;
    let off = f.dir.join("off.npy");
    write_npy_f64(&off, &y).unwrap();
    let out = f.dir.join("out");
    let mut args: Vec<&str> = f.base_args(&out);
    let g = args.iter().position(|&a| a == "--groups").unwrap();
    args.drain(g..g + 2);
    let t = args.iter().position(|&a| a == "--targets").unwrap();
    args[t + 1] = p(&off);
    args.extend([
        "--loss",
        "relative",
        "--epochs",
        "300",
        "--lambda-l0",
        "1e-4",
    ]);
    let o = succeeds(&args);
    let err = stderr(&o);
    assert!(err.contains(" normalize_groups=n/a "), "{err}");
    assert!(
        err.contains("\n  no --groups: every target weighs 1 in the loss (normalize_groups does not apply)\n"),
        "{err}"
    );
    let s = summary(&out);
    assert_eq!(s["settings"]["normalize_groups"], serde_json::Value::Null);
    // The rule, from targets.csv: the top 10% of the 20 targets (2) carry
    // more than half of the squared relative errors.
    let rows = csv_rows(&out.join("targets.csv"));
    let col = rows[0].iter().position(|c| c == "rel_error").unwrap();
    let mut sq: Vec<f64> = rows[1..]
        .iter()
        .map(|r| r[col].parse::<f64>().unwrap().powi(2))
        .collect();
    sq.sort_by(|a, b| b.total_cmp(a));
    let share = (sq[0] + sq[1]) / sq.iter().sum::<f64>();
    assert!(share > 0.5, "{share}");
    let want = format!(
        "warning: without --groups the fit is dominated by a few targets: the 2 of 20 with the largest errors (the top 10%) carry {:.1}% of the loss (more than 50%); give --groups (one group id per target, e.g. the kind of total) so that each group of targets shares one unit of loss",
        100.0 * share
    );
    assert!(err.lines().any(|l| l == want), "{want}\n{err}");
    // With groups: the settings say what is in use and no such warning.
    args.extend(["--groups", p(&f.groups), "--overwrite"]);
    let err = stderr(&succeeds(&args));
    assert!(err.contains(" normalize_groups=true "), "{err}");
    assert!(
        !err.contains("no --groups") && !err.contains("dominated"),
        "{err}"
    );
}

/// Runs `l0 args` under an address-space limit of `kib` KiB (`ulimit -v`):
/// its exit code and stderr.
fn l0_within(kib: u64, args: &[&str]) -> (Option<i32>, String) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {kib} && exec {BIN} {}",
            quoted.join(" ")
        ))
        .output()
        .unwrap();
    (o.status.code(), stderr(&o))
}

#[test]
fn sizes_beyond_memory_are_refused_before_allocating() {
    let f = problem("sizes", 6, 2000, 0.01, None);
    let out = f.dir.join("out");
    // A grid count beyond the bound, and beyond any integer: refused
    // within 100 MB of address space, before anything is read.
    for n in [
        "10000000000000000000",
        "1000000000000000000000000000000",
        "1000001",
    ] {
        let grid = format!("1e-6:1e-3:{n}");
        let (code, err) = l0_within(
            100_000,
            &["sweep", "--lambda-grid", &grid, "--out", p(&out)],
        );
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(
            err,
            format!("error: --lambda-grid: a lambda grid holds at most 1000000 values (one model each), got {n}\n")
        );
    }
    // 10,000 models of the demo's 250,000 columns: refused with the figure
    // before the demo is built, within 100 MB.
    let lambdas = vec!["1e-4"; 10_000].join(",");
    let (code, err) = l0_within(
        100_000,
        &["sweep", "--lambda-l0", &lambdas, "--out", p(&out)],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("error: a sweep of 10000 models x 250000 columns needs 160.0 GB of memory, more than the ")
            && err.ends_with(" available\n"),
        "{err}"
    );
    // 10,000 models of 2,000 columns (1.3 GB) under a 1 GB limit: refused
    // with the figure (from the matrix file's header) before it is read.
    let mut args = f.base_args(&out);
    args[0] = "sweep";
    args.extend(["--lambda-l0", &lambdas, "--epochs", "2"]);
    let (code, err) = l0_within(1_000_000, &args);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(
            "error: a sweep of 10000 models x 2000 columns needs 1.3 GB of memory, more than the "
        ) && err.ends_with(" available\n")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn threads_beyond_the_bound_are_refused() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let f = problem("threads", 4, 10, 0.5, None);
    let out = f.dir.join("out");
    let mut args = f.base_args(&out);
    let k = args.iter().position(|&a| a == "--threads").unwrap();
    let many = (4 * cpus + 1).to_string();
    for (command, n) in [("calibrate", "100000"), ("sweep", many.as_str())] {
        args[0] = command;
        args[k + 1] = n;
        let mut a = args.clone();
        if command == "sweep" {
            a.extend(["--lambda-l0", "1e-3,1e-2"]);
        }
        assert_eq!(
            fails(&a),
            format!(
                "error: --threads: threads must be at most {} (4 x the {cpus} logical CPUs: more threads only share the same cores), got {n}",
                4 * cpus
            )
        );
    }
    assert!(!out.exists());
}

#[test]
fn a_signal_during_setup_exits_at_once() {
    let dir = scratch("setup-signal");
    let out = dir.join("out");
    // The demo problem takes a while to build: the signal lands in setup.
    let mut child = Command::new(BIN)
        .args(["calibrate", "--epochs", "1000000", "--threads", "1"])
        .args(["--device", "cpu", "--out", p(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    // Building the demo takes far longer than this: the signal lands
    // before training begins.
    std::thread::sleep(Duration::from_millis(50));
    signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.by_ref().map(Result::unwrap).collect();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(!rest.iter().any(|l| l.starts_with("Epoch")), "{rest:?}");
    // Nothing is left: no checkpoint, no folder, no staging folder.
    assert!(!out.join("checkpoint.l0ck").exists());
}

#[test]
fn two_runs_into_one_folder_one_is_refused() {
    let f = problem("race", 6, 60, 0.3, None);
    for attempt in 0..3 {
        let out = f.dir.join(format!("out{attempt}"));
        let start = |epochs: &'static str, seed: &'static str| {
            let mut a = f.args_with_seed(&out, seed);
            a.extend([
                "--epochs",
                epochs,
                "--log-every",
                "10",
                "--checkpoint-every",
                "10",
            ]);
            Command::new(BIN)
                .args(&a)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start("3000", "1"), start("3010", "2"));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let ok: Vec<bool> = [&a, &b].iter().map(|o| o.status.success()).collect();
        assert_eq!(
            ok.iter().filter(|&&s| s).count(),
            1,
            "{} / {}",
            stderr(&a),
            stderr(&b)
        );
        let (loser, epochs) = if ok[0] { (&b, 3000) } else { (&a, 3010) };
        assert_eq!(loser.status.code(), Some(2));
        let refusal = stderr(loser);
        assert!(
            refusal
                == format!(
                    "error: {}: another l0 run is writing to this output folder: wait for it to finish, or give another --out\n",
                    out.display()
                )
                || refusal.contains("holds the files of an earlier run"),
            "{refusal}"
        );
        // The folder holds the winner's files only: its summary, and a log
        // whose last epoch is the winner's.
        assert_eq!(summary(&out)["epochs"], epochs);
        // (epoch is its fourth column; a row per target every 10 epochs).
        let log = csv_rows(&out.join("log.csv"));
        let epochs_logged: Vec<u64> = log[1..].iter().map(|r| r[3].parse().unwrap()).collect();
        assert_eq!(epochs_logged.len(), 6 * epochs as usize / 10);
        assert_eq!(*epochs_logged.last().unwrap(), epochs);
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "checkpoint.l0ck",
                "log.csv",
                "summary.json",
                "targets.csv",
                "weights.csv",
                "weights.npy"
            ]
        );
    }
}

#[test]
fn overwrite_then_diverge_keeps_the_earlier_run() {
    let f = problem("diverge", 6, 40, 0.4, None);
    let out = f.dir.join("out");
    let mut first = f.base_args(&out);
    first.extend([
        "--epochs",
        "20",
        "--log-every",
        "10",
        "--checkpoint-every",
        "10",
    ]);
    succeeds(&first);
    let before: Vec<(String, Vec<u8>)> = {
        let mut v: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut second = f.args_with_seed(&out, "9");
    let k = second.iter().position(|&a| a == "--lr").unwrap();
    second[k + 1] = "1e30";
    second.extend([
        "--epochs",
        "30",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--overwrite",
    ]);
    let o = l0(&second);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.ends_with("error: training diverged at epoch 2: the loss is not finite\n"),
        "{err}"
    );
    let after: Vec<(String, Vec<u8>)> = {
        let mut v: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(after, before, "the earlier run changed");
    let siblings: Vec<String> = fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");
}

#[test]
fn a_read_only_out_is_refused_before_training() {
    use std::os::unix::fs::PermissionsExt;
    let f = problem("readonly", 4, 10, 0.5, None);
    let ro = f.dir.join("ro");
    fs::create_dir_all(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    // As root the mode does not stop writes: use a folder of a read-only
    // file system instead.
    let out = if fs::write(ro.join("probe"), "").is_ok() {
        PathBuf::from("/proc/driver")
    } else {
        ro.clone()
    };
    if !out.is_dir() {
        eprintln!("no read-only folder to try; skipped");
        return;
    }
    let mut args = f.base_args(&out);
    args.extend(["--epochs", "1000000"]);
    let err = fails(&args);
    assert!(
        err.starts_with(&format!(
            "error: {}: cannot write to the output folder: ",
            out.display()
        )) && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn int64_group_ids_are_labels() {
    let f = problem("bigids", 6, 40, 0.4, None);
    // Ids beyond 2^53 that a float round trip would merge (2^53 and
    // 2^53 + 1) and the int64 extremes.
    let ids: Vec<i64> = vec![i64::MAX, i64::MIN, 1 << 53, (1 << 53) + 1, (1 << 53) + 1, 7];
    let groups = f.dir.join("ids.npy");
    write_npy_i64(&groups, &ids).unwrap();
    let groups_csv = f.dir.join("ids.csv");
    fs::write(
        &groups_csv,
        ids.iter().map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();
    for (k, file) in [&groups, &groups_csv].into_iter().enumerate() {
        let out = f.dir.join(format!("out{k}"));
        let mut args = f.base_args(&out);
        let g = args.iter().position(|&a| a == "--groups").unwrap();
        args[g + 1] = p(file);
        args.extend(["--epochs", "5", "--holdout-groups", "9007199254740993"]);
        args.extend(["--group-multiplier", "9223372036854775807=2"]);
        succeeds(&args);
        let s = summary(&out);
        // Exactly the two rows with id 2^53 + 1 are held out.
        assert_eq!(s["targets_holdout"], 2, "{s}");
        assert_eq!(
            s["settings"]["group_multipliers"]["9223372036854775807"],
            2.0
        );
    }
}

#[test]
fn tolerance_bands_and_the_l1_loss_from_the_command_line() {
    let f = problem("tolerance", 6, 80, 0.4, None);
    let out = f.dir.join("out");
    let with = |extra: &[&str]| f.args_with(&out, &["--epochs", "60", "--overwrite"], extra);
    let o = succeeds(&with(&[
        "--target-tolerance",
        "0.05",
        "--loss",
        "l1-relative",
        "--loss-cap",
        "2",
    ]));
    let rows = csv_rows(&out.join("targets.csv"));
    assert_eq!(rows[0].last().map(String::as_str), Some("within_tolerance"));
    let rel = rows[0].iter().position(|c| c == "rel_abs_error").unwrap();
    let mut inside = 0;
    for r in &rows[1..] {
        let e: f64 = r[rel].parse().unwrap();
        let within = r.last().unwrap() == "true";
        assert_eq!(within, e <= 0.05, "{r:?}");
        inside += within as usize;
    }
    let s = summary(&out);
    assert_eq!(s["targets_within_tolerance"], inside);
    assert_eq!(s["settings"]["target_tolerance"], 0.05);
    assert_eq!(s["settings"]["loss"], "l1-relative");
    assert_eq!(s["settings"]["loss_cap"], 2.0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "tolerance: {inside} of 6 targets within their bands"
        )),
        "{text}"
    );
    // Per target from a file; one value per target.
    let tol = f.dir.join("tol.npy");
    write_npy_f64(&tol, &[0.0, 0.1, 0.0, 0.1, 0.0, 0.1]).unwrap();
    succeeds(&with(&["--target-tolerance", p(&tol)]));
    assert_eq!(
        csv_rows(&out.join("targets.csv"))[0]
            .last()
            .map(String::as_str),
        Some("within_tolerance")
    );
    // Without bands, targets.csv keeps its columns.
    succeeds(&with(&[]));
    assert_eq!(
        csv_rows(&out.join("targets.csv"))[0]
            .last()
            .map(String::as_str),
        Some("records_contributing")
    );
    assert!(summary(&out).get("targets_within_tolerance").is_none());
    let bad = |extra: &[&str]| fails(&with(extra));
    assert_eq!(
        bad(&["--loss", "relative", "--loss-cap", "0.5"]),
        "error: --loss-cap applies to --loss l1-relative only, not to relative"
    );
    assert_eq!(
        bad(&["--loss", "l1-relative", "--loss-cap", "0"]),
        "error: --loss-cap must be a number > 0, got 0"
    );
    assert_eq!(
        bad(&["--target-tolerance", "-0.1"]),
        "error: --target-tolerance must be a finite number >= 0, got -0.1"
    );
    let short = f.dir.join("short.npy");
    write_npy_f64(&short, &[0.1, 0.1]).unwrap();
    assert_eq!(
        bad(&["--target-tolerance", p(&short)]),
        format!(
            "error: {}: expected 6 target tolerances (one per target), found 2",
            short.display()
        )
    );
    let negative = f.dir.join("negative.npy");
    write_npy_f64(&negative, &[0.1, 0.1, -1.0, 0.0, 0.0, 0.0]).unwrap();
    assert_eq!(
        bad(&["--target-tolerance", p(&negative)]),
        format!(
            "error: {}: target tolerance 2 is -1; each must be a finite number >= 0",
            negative.display()
        )
    );
}
