//! Which commands can run together, and why not: the pure half of
//! `distex parallel` and all of `distex plan`.
//!
//! Edges come from explicit `depends_on` and from inferred conflicts
//! between two commands of the list (the later one waits for the earlier):
//!
//! * the same build output directory in the same place (`cargo` → `target/`,
//!   `npm install` → `node_modules/`, `gradle` → `build/`, `make` → its
//!   directory, `cmake --build DIR` → `DIR`, ...), with `cd DIR &&` taken
//!   into account;
//! * writes to the same file: redirections (`>`, `>>`), `cp`/`mv`/`install`
//!   targets, `rm`, `touch`, `tee`.
//!
//! Waves are the dependency levels: every task of wave N depends only on
//! tasks of earlier waves, so a wave can run all at once.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One command to run, as given by the user or a JSON request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskSpec {
    pub(crate) id: String,
    pub(crate) command: String,
    /// Ids of tasks that must complete first.
    #[serde(default)]
    pub(crate) depends_on: Vec<String>,
}

/// A dependency distex inferred, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Inferred {
    /// The earlier task this one waits for.
    pub(crate) after: String,
    /// Why: `both write target/ in .`, `both write out.txt`.
    pub(crate) reason: String,
}

/// One task in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct PlannedTask {
    pub(crate) id: String,
    pub(crate) command: String,
    pub(crate) depends_on: Vec<String>,
    pub(crate) inferred: Vec<Inferred>,
    /// 1-based wave number.
    pub(crate) wave: usize,
}

impl PlannedTask {
    /// Every task this one waits for, explicit and inferred.
    pub(crate) fn blocked_by(&self) -> Vec<String> {
        let mut all: Vec<String> = self.depends_on.clone();
        for i in &self.inferred {
            if !all.contains(&i.after) {
                all.push(i.after.clone());
            }
        }
        all
    }
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Plan {
    pub(crate) tasks: Vec<PlannedTask>,
    /// Task ids per wave, in order.
    pub(crate) waves: Vec<Vec<String>>,
}

/// What a command touches, as far as the plan can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Build output directories (normalized paths, `target`, `web/node_modules`).
    pub(crate) outputs: BTreeSet<String>,
    /// Files written.
    pub(crate) writes: BTreeSet<String>,
}

/// Builds the plan, or says what is wrong with the task list.
pub(crate) fn plan(specs: &[TaskSpec]) -> Result<Plan, String> {
    let mut seen = BTreeSet::new();
    for s in specs {
        if s.id.trim().is_empty() {
            return Err("a task has an empty id".into());
        }
        if !seen.insert(s.id.as_str()) {
            return Err(format!("task id {:?} is used twice", s.id));
        }
    }
    for s in specs {
        for d in &s.depends_on {
            if !seen.contains(d.as_str()) {
                return Err(format!("task {:?} depends on unknown task {d:?}", s.id));
            }
            if d == &s.id {
                return Err(format!("task {:?} depends on itself", s.id));
            }
        }
    }
    let effects: Vec<Effects> = specs.iter().map(|s| effects(&s.command)).collect();
    let mut tasks: Vec<PlannedTask> = specs
        .iter()
        .map(|s| PlannedTask {
            id: s.id.clone(),
            command: s.command.clone(),
            depends_on: s.depends_on.clone(),
            inferred: vec![],
            wave: 0,
        })
        .collect();
    for j in 0..specs.len() {
        for i in 0..j {
            if let Some(reason) = conflict(&effects[i], &effects[j]) {
                // Only when the explicit edges do not already order them the other way.
                if !depends_transitively(specs, &specs[i].id, &specs[j].id) {
                    tasks[j].inferred.push(Inferred { after: specs[i].id.clone(), reason });
                }
            }
        }
    }
    let waves = levels(&mut tasks)?;
    Ok(Plan { tasks, waves })
}

/// True when `from` (transitively) depends on `on` through explicit edges.
fn depends_transitively(specs: &[TaskSpec], from: &str, on: &str) -> bool {
    let by_id: BTreeMap<&str, &TaskSpec> = specs.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for d in by_id.get(id).map(|s| s.depends_on.as_slice()).unwrap_or(&[]) {
            if d == on {
                return true;
            }
            stack.push(d);
        }
    }
    false
}

/// Assigns waves (longest path from a root); errors on a cycle.
fn levels(tasks: &mut [PlannedTask]) -> Result<Vec<Vec<String>>, String> {
    let index: BTreeMap<String, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
    let deps: Vec<Vec<usize>> = tasks.iter().map(|t| t.blocked_by().iter().map(|d| index[d]).collect()).collect();
    let mut wave = vec![0usize; tasks.len()];
    // Kahn-style relaxation: at most n rounds, else there is a cycle.
    for _round in 0..=tasks.len() {
        let mut changed = false;
        for t in 0..tasks.len() {
            let w = deps[t].iter().map(|&d| wave[d] + 1).max().unwrap_or(1).max(1);
            if w != wave[t] {
                wave[t] = w;
                changed = true;
            }
        }
        if !changed {
            let mut waves: Vec<Vec<String>> = vec![Vec::new(); wave.iter().copied().max().unwrap_or(0)];
            for (t, w) in wave.iter().enumerate() {
                tasks[t].wave = *w;
                waves[w - 1].push(tasks[t].id.clone());
            }
            return Ok(waves);
        }
        if wave.iter().any(|&w| w > tasks.len()) {
            break;
        }
    }
    let cyclic: Vec<&str> =
        tasks.iter().zip(&wave).filter(|(_, w)| **w > tasks.len()).map(|(t, _)| t.id.as_str()).collect();
    Err(format!("the dependencies form a cycle (through {})", cyclic.join(", ")))
}

/// Why two commands must not run together, if they must not.
fn conflict(a: &Effects, b: &Effects) -> Option<String> {
    if let Some(dir) = a.outputs.intersection(&b.outputs).next() {
        return Some(format!("both write the build output directory {dir}/"));
    }
    if let Some(file) = a.writes.intersection(&b.writes).next() {
        return Some(format!("both write {file}"));
    }
    // A file written by one inside the other's output directory.
    for f in a.writes.iter().chain(&b.writes) {
        if let Some(dir) = a.outputs.iter().chain(&b.outputs).find(|d| f.starts_with(&format!("{d}/"))) {
            return Some(format!("one writes {f} inside the other's build output directory {dir}/"));
        }
    }
    None
}

/// What `line` writes, from its parsed commands and its redirections.
pub(crate) fn effects(line: &str) -> Effects {
    let mut fx = Effects::default();
    let commands = crate::route::analyze(line).unwrap_or_default();
    let mut cwd = String::new();
    for words in &commands {
        let Some(program) = words.first().map(|w| w.rsplit('/').next().unwrap_or(w)) else { continue };
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let operands: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with('-')).collect();
        match program {
            "cd" => cwd = join(&cwd, operands.first().copied().unwrap_or("~")),
            "cargo" => {
                let dir = flag_value(&args, "--target-dir").unwrap_or("target");
                fx.outputs.insert(join(&cwd, dir));
            }
            "npm" | "yarn" | "pnpm" | "npx" => {
                fx.outputs.insert(join(&cwd, "node_modules"));
            }
            "gradle" | "gradlew" => {
                fx.outputs.insert(join(&cwd, "build"));
            }
            "mvn" | "mvnw" => {
                fx.outputs.insert(join(&cwd, "target"));
            }
            "make" | "gmake" => {
                let dir = flag_value(&args, "-C").unwrap_or(".");
                fx.outputs.insert(join(&cwd, dir));
            }
            "ninja" => {
                let dir = flag_value(&args, "-C").unwrap_or(".");
                fx.outputs.insert(join(&cwd, dir));
            }
            "cmake" => {
                if let Some(dir) = flag_value(&args, "--build").or_else(|| flag_value(&args, "-B")) {
                    fx.outputs.insert(join(&cwd, dir));
                }
            }
            "cp" | "mv" | "install" | "ln" if operands.len() >= 2 => {
                fx.writes.insert(join(&cwd, operands[operands.len() - 1]));
            }
            "rm" | "touch" | "tee" | "truncate" => {
                for o in operands {
                    fx.writes.insert(join(&cwd, o));
                }
            }
            _ => {}
        }
    }
    for target in redirect_targets(line) {
        fx.writes.insert(join("", &target));
    }
    fx.writes.retain(|w| !w.starts_with("/dev/"));
    fx
}

/// The value after `flag` (`-C dir`, `--target-dir=dir`).
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    for (i, a) in args.iter().enumerate() {
        if *a == flag {
            return args.get(i + 1).copied();
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// Files named after `>`, `>|`, `&>` in the line (not `>>`: appends).
fn redirect_targets(line: &str) -> Vec<String> {
    use brush_parser::Token;
    let Ok(tokens) = brush_parser::tokenize_str(line) else { return vec![] };
    let mut out = Vec::new();
    for pair in tokens.windows(2) {
        if let (Token::Operator(op, _), Token::Word(w, _)) = (&pair[0], &pair[1])
            && matches!(op.as_str(), ">" | ">|" | "&>")
            && !w.starts_with('&')
        {
            out.push(w.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    out
}

/// `cwd` joined with `path`, normalized without touching the disk.
fn join(cwd: &str, path: &str) -> String {
    let full = if path.starts_with('/') || path.starts_with('~') || cwd.is_empty() {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let absolute = full.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, command: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec { id: id.into(), command: command.into(), depends_on: deps.iter().map(|d| d.to_string()).collect() }
    }

    #[test]
    fn independent_commands_share_one_wave() {
        let p = plan(&[spec("a", "sleep 1", &[]), spec("b", "echo hi", &[])]).unwrap();
        assert_eq!(p.waves, vec![vec!["a".to_string(), "b".to_string()]]);
    }

    #[test]
    fn explicit_dependencies_make_waves() {
        let p = plan(&[
            spec("a", "true", &[]),
            spec("b", "true", &["a"]),
            spec("c", "true", &["b"]),
            spec("d", "true", &[]),
        ])
        .unwrap();
        assert_eq!(p.waves, vec![vec!["a".to_string(), "d".into()], vec!["b".into()], vec!["c".into()]]);
    }

    #[test]
    fn same_target_dir_is_a_conflict_but_other_projects_are_not() {
        let p = plan(&[
            spec("build", "cargo build", &[]),
            spec("test", "cargo test", &[]),
            spec("web", "cd web && npm run build", &[]),
            spec("other", "cd ../other && cargo build", &[]),
        ])
        .unwrap();
        let test = &p.tasks[1];
        assert_eq!(test.inferred.len(), 1);
        assert_eq!(test.inferred[0].after, "build");
        assert!(test.inferred[0].reason.contains("target/"), "{}", test.inferred[0].reason);
        assert!(p.tasks[2].inferred.is_empty());
        assert!(p.tasks[3].inferred.is_empty(), "{:?}", p.tasks[3].inferred);
    }

    #[test]
    fn same_output_file_is_a_conflict() {
        let p = plan(&[
            spec("a", "echo 1 > out.txt", &[]),
            spec("b", "cp x ./out.txt", &[]),
            spec("c", "echo 2 > other.txt", &[]),
        ])
        .unwrap();
        assert_eq!(p.tasks[1].inferred[0].after, "a");
        assert!(p.tasks[1].inferred[0].reason.contains("out.txt"));
        assert!(p.tasks[2].inferred.is_empty());
        assert!(effects("echo x > /dev/null 2>&1").writes.is_empty());
        assert!(effects("echo x >> log.txt").writes.is_empty(), "appends are not conflicts");
    }

    #[test]
    fn make_in_the_same_directory_conflicts() {
        let p = plan(&[
            spec("a", "cd lib && make", &[]),
            spec("b", "make -C lib install", &[]),
            spec("c", "make -C app", &[]),
        ])
        .unwrap();
        assert_eq!(p.tasks[1].inferred[0].after, "a");
        assert!(p.tasks[2].inferred.is_empty());
    }

    #[test]
    fn bad_lists_are_explained() {
        assert!(plan(&[spec("a", "x", &[]), spec("a", "y", &[])]).unwrap_err().contains("twice"));
        assert!(plan(&[spec("a", "x", &["zz"])]).unwrap_err().contains("unknown task \"zz\""));
        assert!(plan(&[spec("a", "x", &["b"]), spec("b", "y", &["a"])]).unwrap_err().contains("cycle"));
    }
}
