//! What docs.rs shows: every public item behind a cargo feature carries its feature badge.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if !path.ends_with("bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A feature-gated public item (module, re-export, type, impl) without
/// `#[cfg_attr(docsrs, doc(cfg(feature = "…")))]` looks always available on docs.rs; and the
/// badges only show when docs.rs passes `--cfg docsrs`.
#[test]
fn every_feature_gated_public_item_carries_its_feature_badge_on_docs_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains(r#"rustdoc-args = ["--cfg", "docsrs"]"#),
        "[package.metadata.docs.rs] passes no --cfg docsrs"
    );
    assert!(
        manifest.contains("check-cfg = ['cfg(docsrs)']"),
        "cfg(docsrs) is not declared for stable builds"
    );
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("#![cfg_attr(docsrs, feature(doc_cfg))]"));
    // The library and its test kit (whose `proptest` feature gates the strategies).
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates/credlock-test/src"), &mut files);
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(feature) = line
                .trim()
                .strip_prefix("#[cfg(feature = \"")
                .and_then(|rest| rest.strip_suffix("\")]"))
            else {
                continue;
            };
            // The attributes after the cfg, then the item they belong to.
            let mut j = i + 1;
            let mut badge = false;
            while j < lines.len() && lines[j].trim_start().starts_with("#[") {
                badge |= lines[j].contains(&format!("doc(cfg(feature = \"{feature}\"))"));
                j += 1;
            }
            let item = lines.get(j).map_or("", |l| l.trim_start());
            if item.starts_with("pub ") && !badge {
                missing.push(format!("{}:{}: {item}", file.display(), j + 1));
            }
        }
    }
    assert!(missing.is_empty(), "no feature badge: {missing:#?}");
}
