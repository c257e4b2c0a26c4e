//! The configuration examples in the README and the benchmarks are real
//! configs.

use stratbox::config::Config;

#[test]
fn every_toml_block_in_the_readme_parses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let blocks: Vec<&str> = readme.split("```toml\n").skip(1).map(|rest| rest.split("```").next().unwrap()).collect();
    assert!(blocks.len() >= 4, "found {} toml blocks", blocks.len());
    for block in blocks {
        if let Err(e) = Config::parse(block, "README.md") {
            panic!("{e}\n---\n{block}");
        }
    }
}

#[test]
fn the_benchmark_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/hooks.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.webhooks.len(), 1);
    assert!(config.store.path.ends_with("benches/bench.db"), "{}", config.store.path);
}
