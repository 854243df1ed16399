//! The smallest embedding shown in README.md and docs/extending.md is the
//! one docs/embedding.md compiles and runs as a doc test (`SmallestEmbedding`
//! in src/lib.rs): this keeps the copies from drifting apart.

fn snippet(doc: &str) -> String {
    let start = doc.find("```rust\n").map(|i| i + "```rust\n".len());
    let start = start.unwrap_or_else(|| panic!("no rust block in docs/embedding.md"));
    let end = doc[start..]
        .find("// Tested like any axum app")
        .unwrap_or_else(|| panic!("docs/embedding.md lost its test part"));
    doc[start..start + end].trim_end().to_owned()
}

fn read(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    std::fs::read_to_string(format!("{root}/{path}"))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn readme_and_extending_show_the_tested_embedding() {
    let tested = snippet(&read("docs/embedding.md"));
    let wiring = tested
        .lines()
        .filter(|l| l.starts_with("use ") || l.starts_with("    ") && !l.trim().is_empty())
        .count();
    assert!(
        wiring <= 15,
        "the smallest embedding grew to {wiring} lines"
    );
    for doc in ["README.md", "docs/extending.md"] {
        assert!(
            read(doc).contains(&tested),
            "{doc} does not show the embedding of docs/embedding.md verbatim"
        );
    }
}
