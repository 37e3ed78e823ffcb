//! The problem to calibrate: the input files (or the built-in demo), read
//! and checked, and the check that a checkpoint belongs to them.

use super::*;

/// The problem to calibrate, from files or the demo.
pub(crate) struct Problem {
    pub(crate) m: SparseMatrix,
    pub(crate) y: Vec<f64>,
    pub(crate) groups: Option<Vec<i64>>,
    pub(crate) names: Vec<String>,
    pub(crate) description: String,
    pub(crate) demo: bool,
    /// The input files, recorded in checkpoints.
    pub(super) inputs: Vec<InputFile>,
}

/// One input file of a run, as a checkpoint records it (`input.ROLE`,
/// `input.ROLE.size`, `input.ROLE.fingerprint` settings), so that
/// `--resume` finds it and can name the one that changed.
pub(crate) struct InputFile {
    pub(super) role: &'static str,
    pub(super) path: PathBuf,
    pub(super) size: String,
    pub(super) fingerprint: Option<u64>,
}

/// The settings that record the input files in a checkpoint start so.
pub(super) const INPUT_PREFIX: &str = "input.";

impl InputFile {
    pub(super) fn new(
        role: &'static str,
        path: &Path,
        size: String,
        fingerprint: Option<u64>,
    ) -> Self {
        InputFile {
            role,
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            size,
            fingerprint,
        }
    }

    pub(super) fn settings(&self) -> Vec<(String, String)> {
        let key = format!("{INPUT_PREFIX}{}", self.role);
        let mut out = vec![
            (key.clone(), self.path.display().to_string()),
            (format!("{key}.size"), self.size.clone()),
        ];
        if let Some(f) = self.fingerprint {
            out.push((format!("{key}.fingerprint"), format!("{f:016x}")));
        }
        out
    }
}

/// The input files of a run: the flags, else (on --resume) the files the
/// checkpoint recorded.
pub(crate) struct Sources {
    pub(super) matrix: Option<PathBuf>,
    pub(super) targets: Option<PathBuf>,
    pub(super) groups: Option<PathBuf>,
    pub(super) target_names: Option<PathBuf>,
}

impl Sources {
    pub(crate) fn new(a: &CalibrateArgs, ckpt: Option<&Checkpoint>) -> Self {
        let stored = |role: &str| {
            ckpt.and_then(|c| c.setting(&format!("{INPUT_PREFIX}{role}")))
                .map(PathBuf::from)
        };
        let pick = |given: &Option<PathBuf>, role| given.clone().or_else(|| stored(role));
        Sources {
            matrix: pick(&a.matrix, "matrix"),
            targets: pick(&a.targets, "targets"),
            groups: pick(&a.groups, "groups"),
            target_names: pick(&a.target_names, "target_names"),
        }
    }
}

impl Sources {
    /// The problem's number of columns as the matrix file's header (or the
    /// demo's specification) declares it, before anything is read: what
    /// a size given on the command line will cost is checked with it.
    /// None when the header cannot tell (the full read then says why).
    pub(crate) fn columns(&self) -> Option<usize> {
        match (&self.matrix, &self.targets) {
            (None, None) => {
                let spec = l0::synth::GeoSpec::default();
                Some(spec.households * spec.areas)
            }
            (Some(m), _) => io::matrix_shape(m).map(|(_, cols)| cols),
            (None, Some(_)) => None,
        }
    }
}

pub(super) fn demo_problem(src: &Sources) -> CliResult<Problem> {
    for (flag, given) in [
        ("--groups", src.groups.is_some()),
        ("--target-names", src.target_names.is_some()),
    ] {
        if given {
            return Err(input_error(format!(
                "{flag} needs --matrix and --targets (without them l0 fits the built-in demo)"
            )));
        }
    }
    let spec = l0::synth::GeoSpec::default();
    let p = l0::synth::geo_stacked(&spec)?;
    let description = format!(
        "built-in demo (synth::geo_stacked: {} households x {} areas, {} national + {} x {} area targets)",
        spec.households, spec.areas, spec.national, spec.per_area, spec.areas
    );
    Ok(Problem {
        m: p.matrix,
        y: p.targets,
        groups: Some(p.groups),
        names: p.names,
        description,
        demo: true,
        inputs: Vec::new(),
    })
}

/// The targets, one per matrix row; a vector as long as M has columns
/// means M was given transposed.
pub(super) fn load_targets(path: &Path, matrix: &Path, m: &SparseMatrix) -> CliResult<Vec<f64>> {
    let y = io::read_vector(path, "targets").map_err(|e| about_file(path, e))?;
    if y.len() != m.rows() && y.len() == m.cols() {
        return Err(input_error(format!(
            "{}: M has {} rows and {} columns, and the {} targets match its columns: M looks transposed (it must be targets x records; save M.T)",
            matrix.display(),
            m.rows(),
            m.cols(),
            y.len()
        )));
    }
    check_len(path, &y, "targets", m.rows(), "matrix row")?;
    Ok(y)
}

pub(super) fn load_groups(path: &Path, rows: usize) -> CliResult<Vec<i64>> {
    let g = io::read_int_vector(path, "group ids").map_err(|e| about_file(path, e))?;
    if g.len() != rows {
        return Err(input_error(format!(
            "{}: expected {rows} group ids (one per matrix row), found {}",
            path.display(),
            g.len()
        )));
    }
    Ok(g)
}

/// Target names, one per line; a first line more than M has rows is a header.
pub(super) fn load_names(path: &Path, rows: usize) -> CliResult<Vec<String>> {
    let mut n = read_names(path).map_err(|e| about_file(path, e))?;
    if n.len() == rows + 1 {
        n.remove(0);
    }
    if n.len() != rows {
        return Err(input_error(format!(
            "{}: expected {rows} target names (one per matrix row, after an optional header line), found {}",
            path.display(),
            n.len()
        )));
    }
    Ok(n)
}

pub(crate) fn load_problem(src: &Sources) -> CliResult<Problem> {
    let (matrix, targets) = match (&src.matrix, &src.targets) {
        (None, None) => return demo_problem(src),
        (Some(m), Some(t)) => (m, t),
        (Some(_), None) => return Err(input_error("--matrix needs --targets")),
        (None, Some(_)) => return Err(input_error("--targets needs --matrix")),
    };
    let m = load_matrix(matrix)?;
    let y = load_targets(targets, matrix, &m)?;
    let groups = match &src.groups {
        None => None,
        Some(path) => Some(load_groups(path, m.rows())?),
    };
    let names = match &src.target_names {
        None => (0..m.rows()).map(|q| format!("target_{q}")).collect(),
        Some(path) => load_names(path, m.rows())?,
    };
    let [fm, fy, fg] = l0::checkpoint::input_fingerprints(&m, &y, groups.as_deref());
    let mut inputs = vec![
        InputFile::new(
            "matrix",
            matrix,
            format!("{} x {}, {} nonzeros", m.rows(), m.cols(), m.nnz()),
            Some(fm),
        ),
        InputFile::new("targets", targets, format!("{} values", y.len()), Some(fy)),
    ];
    if let Some(path) = &src.groups {
        inputs.push(InputFile::new(
            "groups",
            path,
            format!("{} ids", m.rows()),
            Some(fg),
        ));
    }
    if let Some(path) = &src.target_names {
        inputs.push(InputFile::new(
            "target_names",
            path,
            format!("{} names", m.rows()),
            None,
        ));
    }
    Ok(Problem {
        description: format!("{} with targets {}", matrix.display(), targets.display()),
        m,
        y,
        groups,
        names,
        demo: false,
        inputs,
    })
}

/// Refuses a checkpoint made for another problem, naming the input that
/// differs when the checkpoint recorded its inputs.
pub(super) fn check_same_problem(path: &Path, c: &Checkpoint, p: &Problem) -> CliResult<()> {
    let fingerprint = problem_fingerprint(&p.m, &p.y, p.groups.as_deref());
    if c.fingerprint != fingerprint {
        let now = l0::checkpoint::input_fingerprints(&p.m, &p.y, p.groups.as_deref());
        for (role, f) in ["matrix", "targets", "groups"].into_iter().zip(now) {
            let key = format!("{INPUT_PREFIX}{role}");
            let Some(then) = c.setting(&format!("{key}.fingerprint")) else {
                continue;
            };
            if then == format!("{f:016x}") {
                continue;
            }
            let file = p.inputs.iter().find(|i| i.role == role);
            let described = |path: Option<String>, size: Option<String>| match (path, size) {
                (Some(path), Some(size)) => format!("{path} ({size})"),
                _ => "none".to_string(),
            };
            return Err(input_error(format!(
                "{}: the {role} differ from the checkpoint's: {} now, {} then; resume with the inputs the run started with",
                path.display(),
                described(
                    file.map(|i| i.path.display().to_string()),
                    file.map(|i| i.size.clone())
                ),
                described(
                    c.setting(&key).map(str::to_string),
                    c.setting(&format!("{key}.size")).map(str::to_string)
                ),
            )));
        }
        if p.demo {
            return Err(input_error(format!(
                "{}: the checkpoint was not made for the built-in demo and does not record its input files: give --matrix and --targets (and --groups) of its run",
                path.display()
            )));
        }
        return Err(input_error(format!(
            "{}: the checkpoint belongs to a different problem (fingerprint {:016x}, these inputs give {:016x}): the matrix, targets or groups changed",
            path.display(),
            c.fingerprint,
            fingerprint
        )));
    }
    if c.state.len() != p.m.cols() {
        return Err(input_error(format!(
            "{}: the checkpoint has {} columns, the matrix {}",
            path.display(),
            c.state.len(),
            p.m.cols()
        )));
    }
    Ok(())
}
