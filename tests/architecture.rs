//! The rules of ARCHITECTURE.md, enforced: who may depend on whom, who may speak NATS,
//! and that every module says what it is for.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn members(dir: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

fn manifest(dir: &Path) -> toml::Table {
    std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().parse().unwrap()
}

fn deps(m: &toml::Table, section: &str) -> Vec<String> {
    m.get(section).and_then(|d| d.as_table()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

const SERVICES: &[&str] = &["ingest", "segmenter", "scheduler", "renderer", "sender", "tracker"];

#[test]
fn the_six_services_exist() {
    let names: Vec<String> = members("services").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, {
        let mut s: Vec<String> = SERVICES.iter().map(|s| s.to_string()).collect();
        s.sort();
        s
    });
}

#[test]
fn services_never_depend_on_each_other() {
    for (name, dir) in members("services") {
        let m = manifest(&dir);
        for section in ["dependencies", "dev-dependencies"] {
            for dep in deps(&m, section) {
                assert!(!SERVICES.contains(&dep.as_str()), "service {name} depends on service {dep} ({section})");
            }
        }
    }
}

#[test]
fn contracts_depend_on_no_internal_crate_runtime_nats_or_database() {
    let m = manifest(&root().join("crates/contracts"));
    let internal: Vec<String> = members("crates").into_iter().map(|(n, _)| n).collect();
    for dep in deps(&m, "dependencies") {
        assert!(!internal.contains(&dep), "contracts depends on {dep}");
        assert!(!["tokio", "async-nats", "sqlx", "axum", "reqwest", "lettre"].contains(&dep.as_str()), "contracts depends on {dep}");
    }
}

#[test]
fn only_the_bus_speaks_nats_and_spells_subjects() {
    for (name, dir) in members("crates").into_iter().chain(members("services")) {
        let m = manifest(&dir);
        if name != "bus" {
            assert!(!deps(&m, "dependencies").contains(&"async-nats".to_owned()), "{name} depends on async-nats");
        }
        if name == "bus" {
            continue;
        }
        for file in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(!text.contains("async_nats"), "{} imports async_nats", file.display());
            assert!(!text.contains("\"pf."), "{} spells a subject by hand", file.display());
        }
    }
}

#[test]
fn the_test_kit_is_a_dev_dependency_only() {
    // The benchmark tool reuses its server launchers; it is run by hand and in CI, and is
    // not part of what a deployment runs.
    const TOOLS: &[&str] = &["bench"];
    for (name, dir) in members("crates").into_iter().chain(members("services")).chain([("postflow".into(), root())]) {
        if TOOLS.contains(&name.as_str()) {
            continue;
        }
        assert!(!deps(&manifest(&dir), "dependencies").contains(&"testkit".to_owned()), "{name} depends on testkit outside dev-dependencies");
    }
}

#[test]
fn versions_are_declared_once_in_the_workspace() {
    for (name, dir) in members("crates").into_iter().chain(members("services")) {
        let m = manifest(&dir);
        for section in ["dependencies", "dev-dependencies"] {
            if let Some(t) = m.get(section).and_then(|d| d.as_table()) {
                for (dep, spec) in t {
                    let inherits = spec.as_table().is_some_and(|s| s.get("workspace").and_then(|w| w.as_bool()) == Some(true));
                    assert!(inherits, "{name}: {dep} must use `workspace = true` ({section})");
                }
            }
        }
        assert!(m.get("lints").is_some(), "{name} must inherit the workspace lints");
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut dirs: Vec<PathBuf> = members("crates").into_iter().chain(members("services")).map(|(_, d)| d.join("src")).collect();
    dirs.push(root().join("src"));
    for dir in dirs {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            let is_test_module = file.file_name().is_some_and(|n| n == "tests.rs");
            assert!(first.starts_with("//!") || is_test_module, "{} does not open with a //! line", file.display());
        }
    }
}
