//! The drift check: the current shape against the recorded one, and every
//! recorded older version through the migrations.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::SessionSchema;
use super::shape::{Change, Recorded, diff};
use super::{replay, text, trace};

/// The folder, inside the crate that runs the check, that holds the
/// recorded shapes: `session-schemas/{Struct}/v{N}.shape`.
pub const RECORD_DIR: &str = "session-schemas";

/// The environment variable that asks the check to re-record
/// (`TYPED_SESSION_RECORD=1`), outside CI only.
pub const RECORD_ENV: &str = "TYPED_SESSION_RECORD";

/// Whether the check may write recorded files.
///
/// ```
/// use typed_session::schema::RecordMode;
///
/// assert_eq!(RecordMode::from_vars(Some("true"), Some("1")), RecordMode::Check);
/// assert_eq!(RecordMode::from_vars(None, Some("1")), RecordMode::Overwrite);
/// assert_eq!(RecordMode::from_vars(None, None), RecordMode::RecordMissing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordMode {
    /// Never write: a missing record is a failure (when `CI` is set).
    Check,
    /// Record a version that has no file yet; a changed shape is a
    /// failure (the default outside CI).
    RecordMissing,
    /// Also re-record a changed shape, when the change is compatible with
    /// the records stored at that version (`TYPED_SESSION_RECORD=1`
    /// outside CI). An incompatible change still fails: it needs a version
    /// bump.
    Overwrite,
}

impl RecordMode {
    /// From the environment: `CI` (set and not `0`/`false`: [`Check`](Self::Check)),
    /// then [`RECORD_ENV`].
    pub fn from_env() -> Self {
        let ci = std::env::var("CI").ok();
        let record = std::env::var(RECORD_ENV).ok();
        Self::from_vars(ci.as_deref(), record.as_deref())
    }

    /// From the values of `CI` and [`RECORD_ENV`].
    pub fn from_vars(ci: Option<&str>, record: Option<&str>) -> Self {
        let on = |v: Option<&str>| v.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
        if on(ci) {
            RecordMode::Check
        } else if on(record) {
            RecordMode::Overwrite
        } else {
            RecordMode::RecordMissing
        }
    }
}

/// What a passing check did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The shape matches the recorded one.
    Unchanged,
    /// No record existed for this version; it was written at this path.
    Recorded(PathBuf),
    /// A compatible change was re-recorded at this path.
    Rerecorded(PathBuf),
}

/// A passing check: what it did, and what it could not see (fields
/// recorded as opaque and why).
#[derive(Debug, Clone)]
pub struct Report {
    /// What the check did.
    pub outcome: Outcome,
    /// Fields the tracer could not follow, and older versions' fields the
    /// replay could not build samples for.
    pub notes: Vec<String>,
}

/// Why the check failed: the message names the type, the version, each
/// changed path and the fix.
#[derive(Debug, Clone)]
pub struct Drift {
    kind: DriftKind,
    message: String,
}

/// The kind of a [`Drift`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriftKind {
    /// The shape changed and stored records of this version would not load
    /// as they are (or data would be dropped): bump the version and migrate.
    Incompatible,
    /// The shape changed compatibly: re-record, no bump needed.
    Compatible,
    /// No record for this version, and writing one is not allowed (CI).
    Missing,
    /// A recorded older version does not come through the migrations.
    Replay,
    /// A recorded file could not be read or written.
    Unreadable,
}

impl Drift {
    /// The kind of failure.
    pub fn kind(&self) -> DriftKind {
        self.kind
    }

    fn new(kind: DriftKind, message: String) -> Self {
        Drift { kind, message }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Drift {}

/// The check of one folder of recorded shapes.
///
/// ```
/// use typed_session::SessionSchema;
/// use typed_session::schema::{Outcome, RecordMode, ShapeCheck};
///
/// #[derive(SessionSchema)]
/// struct Visit { count: u32 }
///
/// let dir = std::env::temp_dir().join(format!("typed-session-doc-{}", std::process::id()));
/// let check = ShapeCheck::in_dir(&dir);
/// let first = check.clone().mode(RecordMode::RecordMissing).check::<Visit>().unwrap();
/// assert!(matches!(first.outcome, Outcome::Recorded(_)));
/// let again = check.mode(RecordMode::Check).check::<Visit>().unwrap();
/// assert_eq!(again.outcome, Outcome::Unchanged);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShapeCheck {
    dir: PathBuf,
    mode: RecordMode,
}

impl ShapeCheck {
    /// Recorded shapes under `dir` (`dir/{Struct}/v{N}.shape`), with the
    /// mode from the environment ([`RecordMode::from_env`]).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ShapeCheck {
            dir: dir.into(),
            mode: RecordMode::from_env(),
        }
    }

    /// Whether the check may write.
    pub fn mode(mut self, mode: RecordMode) -> Self {
        self.mode = mode;
        self
    }

    /// Runs the check for `S`.
    pub fn check<S: SessionSchema>(&self) -> Result<Report, Drift> {
        let (current, mut notes) = trace::current::<S>();
        let type_dir = self.dir.join(S::NAME);
        let path = type_dir.join(format!("v{}.shape", S::VERSION));
        let shown = shown(&path);
        let outcome = match read(&path)? {
            None if self.mode == RecordMode::Check => {
                return Err(Drift::new(
                    DriftKind::Missing,
                    format!(
                        "{name} is at version {v}, which has no recorded stored shape ({shown}), \
                         and CI is set, so the check writes nothing.\n\
                         Fix: run the tests once outside CI to record it, and commit {shown}.",
                        name = S::NAME,
                        v = S::VERSION,
                    ),
                ));
            }
            None => {
                write(&path, &current)?;
                eprintln!(
                    "typed-session: recorded the stored shape of {} v{} in {shown}; commit it",
                    S::NAME,
                    S::VERSION
                );
                Outcome::Recorded(path.clone())
            }
            Some(recorded) => {
                if recorded.name != S::NAME || recorded.version != S::VERSION {
                    return Err(Drift::new(
                        DriftKind::Unreadable,
                        format!(
                            "{shown} records {} v{}, not {} v{}: restore the file or record it again",
                            recorded.name,
                            recorded.version,
                            S::NAME,
                            S::VERSION
                        ),
                    ));
                }
                let changes = diff(&recorded, &current);
                if changes.is_empty() {
                    if self.mode == RecordMode::Overwrite && recorded != current {
                        // Only container names changed: JSON holds none.
                        write(&path, &current)?;
                        Outcome::Rerecorded(path.clone())
                    } else {
                        Outcome::Unchanged
                    }
                } else {
                    let failures = compatibility::<S>(&recorded);
                    let compatible = failures.is_empty() && !changes.iter().any(Change::is_removal);
                    if compatible && self.mode == RecordMode::Overwrite {
                        write(&path, &current)?;
                        eprintln!(
                            "typed-session: re-recorded the stored shape of {} v{} in {shown} \
                             (a compatible change); commit it",
                            S::NAME,
                            S::VERSION
                        );
                        Outcome::Rerecorded(path.clone())
                    } else {
                        return Err(changed::<S>(
                            &shown, &changes, &failures, compatible, self.mode,
                        ));
                    }
                }
            }
        };
        replay_older::<S>(&type_dir, &mut notes)?;
        Ok(Report { outcome, notes })
    }
}

/// Checks that the stored shape of `S` is the one recorded for its
/// version, and that every recorded older version loads through the
/// migrations; panics with a message that names the type, the version,
/// each changed path and the fix.
///
/// Call it from a test of the crate that defines the session:
///
/// ```no_run
/// # use typed_session::SessionSchema;
/// # #[derive(SessionSchema)] struct ShopSession { n: u32 }
/// #[test]
/// fn session_shape_is_recorded() {
///     typed_session::schema::assert_recorded::<ShopSession>();
/// }
/// ```
///
/// The records live in `session-schemas/{Struct}/v{N}.shape` under the
/// crate's root (`CARGO_MANIFEST_DIR`); commit them. The check
///
/// - records the shape when its version has no file yet, except when `CI`
///   is set: on CI a missing record fails;
/// - fails when the shape differs from the recorded one. A change that
///   records of that version survive (a field added at the top level, an
///   enum variant added, a nested field that has a default, `u32` widened
///   to `u64`) is reported as compatible: re-record it with
///   `TYPED_SESSION_RECORD=1` (outside CI), no version bump. Anything else
///   (a rename, a removal, a retype that old values do not fit) needs
///   `version = N + 1` and a `migrate(from = N, with = ...)`;
/// - replays samples of every recorded older version through the
///   migrations, and fails when one does not load into the current type or
///   leaves stored keys the current type does not know (data dropped).
///
/// Shapes are traced from the types' `Deserialize` impls; what the tracer
/// cannot follow (`deserialize_any`: untagged or internally tagged enums,
/// `#[serde(flatten)]`, `serde_json::Value`; types that validate while
/// deserializing, such as dates) is recorded as `opaque`, and only its
/// presence is checked.
pub fn assert_recorded<S: SessionSchema>() {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(drift) = ShapeCheck::in_dir(root.join(RECORD_DIR)).check::<S>() {
        panic!("\n{drift}\n");
    }
}

/// What loading samples of the recorded shape into `S` (no migration)
/// fails on.
fn compatibility<S: SessionSchema>(recorded: &Recorded) -> Vec<replay::Failure> {
    let mut all: Vec<replay::Failure> = Vec::new();
    for sample in replay::samples(recorded) {
        for f in replay::load::<S>(&sample).0 {
            if !all.iter().any(|a| a.field == f.field) {
                all.push(f);
            }
        }
    }
    all
}

fn changed<S: SessionSchema>(
    shown: &str,
    changes: &[Change],
    failures: &[replay::Failure],
    compatible: bool,
    mode: RecordMode,
) -> Drift {
    let (name, v) = (S::NAME, S::VERSION);
    let mut m = format!(
        "{name}: the stored shape of version {v} changed without a version bump \
         (recorded in {shown}):\n"
    );
    for c in changes {
        let _ = writeln!(m, "  {c}");
    }
    if compatible {
        let _ = write!(
            m,
            "These changes are compatible: every sample of the recorded version {v} shape loads \
             into this code with nothing reset, and nothing stored is dropped. No version bump is \
             needed.\nFix: re-record with {RECORD_ENV}=1 (outside CI) and commit {shown}."
        );
        if mode == RecordMode::Check {
            m.push_str(" (CI is set: the check writes nothing here.)");
        }
        return Drift::new(DriftKind::Compatible, m);
    }
    if !failures.is_empty() {
        let _ = writeln!(
            m,
            "Records stored at version {v} would not load into this code:"
        );
        for f in failures {
            let _ = writeln!(
                m,
                "  {}: {} (the field would be reset to its default in every stored session)",
                f.field, f.reason
            );
        }
    }
    if changes.iter().any(Change::is_removal) {
        let _ = writeln!(
            m,
            "A removed path's stored values would be dropped without a trace, or (a rename) \
             never reach the new name."
        );
    }
    let _ = write!(
        m,
        "Fix: bump the version and migrate the stored data: \
         #[session(version = {next}, migrate(from = {v}, with = ...))] with a \
         fn(serde_json::Value) -> Result<serde_json::Value, MigrationError> that turns version \
         {v}'s fields into this shape; then run the tests once outside CI to record \
         {next_file}, and commit it. If version {v} was never deployed, delete {shown} and run \
         the tests to record it again.",
        next = v + 1,
        next_file = shown.replace(&format!("v{v}.shape"), &format!("v{}.shape", v + 1)),
    );
    Drift::new(DriftKind::Incompatible, m)
}

/// Every recorded version below the current one, replayed through the
/// migrations into `S`.
fn replay_older<S: SessionSchema>(type_dir: &Path, notes: &mut Vec<String>) -> Result<(), Drift> {
    let mut problems = String::new();
    for from in 1..S::VERSION {
        let path = type_dir.join(format!("v{from}.shape"));
        let Some(old) = read(&path)? else { continue };
        let shown = shown(&path);
        for (key, shape) in &old.fields {
            if matches!(shape, super::shape::Shape::Opaque(_)) {
                notes.push(format!(
                    "{shown}: `{key}` is opaque; the replay leaves it out"
                ));
            }
        }
        for sample in replay::samples(&old) {
            let migrated = match replay::migrate::<S>(from, sample) {
                Ok(m) => m,
                Err(e) => {
                    let _ = writeln!(problems, "  from version {from} ({shown}): {e}");
                    break;
                }
            };
            let (failures, unknown) = replay::load::<S>(&migrated);
            for f in failures {
                let line = format!(
                    "  from version {from} ({shown}): after the migrations, `{}` does not load \
                     ({}); it would be reset to its default",
                    f.field, f.reason
                );
                if !problems.contains(&line) {
                    let _ = writeln!(problems, "{line}");
                }
            }
            for key in unknown {
                let line = format!(
                    "  from version {from} ({shown}): the migrations leave `{key}`, which version \
                     {} does not store: its data would be dropped (remove it in the migration \
                     if that is intended)",
                    S::VERSION
                );
                if !problems.contains(&line) {
                    let _ = writeln!(problems, "{line}");
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Drift::new(
        DriftKind::Replay,
        format!(
            "{name} v{v}: recorded older versions do not come through the migrations:\n{problems}\
             Fix: the migration steps must turn each older shape into the next one (a renamed \
             nested field too); see migrate(from = N, with = ...) on {name}.",
            name = S::NAME,
            v = S::VERSION,
        ),
    ))
}

fn read(path: &Path) -> Result<Option<Recorded>, Drift> {
    match std::fs::read_to_string(path) {
        Ok(body) => text::parse(&body)
            .map(Some)
            .map_err(|e| Drift::new(DriftKind::Unreadable, format!("{}: {e}", shown(path)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Drift::new(
            DriftKind::Unreadable,
            format!("{} could not be read: {e}", shown(path)),
        )),
    }
}

fn write(path: &Path, rec: &Recorded) -> Result<(), Drift> {
    let fail = |e: std::io::Error| {
        Drift::new(
            DriftKind::Unreadable,
            format!("{} could not be written: {e}", shown(path)),
        )
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, text::write(rec)).map_err(fail)
}

/// A path as messages show it: relative to the working directory (the
/// crate's root under `cargo test`) when it is inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
