//! The `l0` program, run as a subprocess on small files the tests write.

mod common;

use common::Rng;
use l0::io::npy::{read_npy, write_npy_f64, write_npy_i64};
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

fn l0(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
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
            "excluded"
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
    assert_eq!(s["device"], "cpu (1 threads)");
    assert_eq!(s["targets_excluded"], 2);
    let active = w.iter().filter(|&&x| x > 0.0).count();
    assert_eq!(s["active"].as_u64().unwrap() as usize, active);
    let sparsity = s["sparsity"].as_f64().unwrap();
    assert!((sparsity - (1.0 - active as f64 / 200.0)).abs() < 1e-12);
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
        "target_name,estimate,target,epoch,error,rel_error,abs_error,rel_abs_error,loss"
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
fn fails(args: &[&str]) -> String {
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
        "error: --loss: unknown loss 'hinge': expected 'mse' or 'relative'"
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
            "error: {}: group ids must be integers, got 1.5 at index 2",
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
    let mut args = f.base_args(&full);
    args.extend(extra);
    let o = l0(&args);
    assert!(o.status.success(), "{}", stderr(&o));

    let mut args = f.base_args(&part);
    args.extend(extra);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

#[test]
fn resume_refuses_other_data_and_names_changed_settings() {
    let f = problem("refuse", 8, 50, 0.4, None);
    let run = f.dir.join("run");
    let mut args = f.base_args(&run);
    args.extend(["--epochs", "60", "--checkpoint-every", "20"]);
    assert!(l0(&args).status.success());
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

#[test]
fn regress_selects_the_true_features() {
    let dir = scratch("regress");
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
    let out = dir.join("out");
    let o = l0(&[
        "regress",
        "--x",
        p(&xp),
        "--y",
        p(&yp),
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
        "--out",
        p(&out),
    ]);
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
}
