//! From parsed flags to calls into [`crate::commands`], and from results to output.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::{Cli, Command, ConfigCommand, HookCommand, NodesArgs, RouteArgs, SchemaName};
use crate::commands::{json, nodes, route};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::protocol::{self, SchemaKind};
use crate::report;

/// Runs the parsed command line; returns the exit status.
pub fn run(cli: Cli) -> Result<u8> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Route(args) => route_cmd(&config::load(config_flag)?, args),
        Command::Nodes(args) => nodes_cmd(&config::load(config_flag)?, args),
        Command::Config(ConfigCommand::Show { json }) => {
            config_show(&config::load(config_flag)?, json)
        }
        Command::Config(ConfigCommand::Init { path, force }) => config_init(path.as_deref(), force),
        Command::Json => json_cmd(&config::load(config_flag)?),
        Command::Schema(args) => schema_cmd(args.kind),
        // The hook loads the config itself: a broken config must not fail it.
        Command::Hook(HookCommand::PreToolUse) => Ok(crate::hook::pre_tool_use(config_flag)),
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(context, e)
}

/// Several words after `--` are joined with spaces; one word is the whole line.
fn command_line(words: &[String]) -> String {
    words.join(" ")
}

fn route_cmd(config: &Config, args: RouteArgs) -> Result<u8> {
    let mut assumed = BTreeMap::new();
    for spec in &args.assume_load {
        let (node, load) = route::parse_assumed_load(spec)
            .map_err(|m| Error::Usage(format!("--assume-load: {m}")))?;
        assumed.insert(node, load);
    }
    route::check_assumed(config, &assumed).map_err(Error::Usage)?;
    let line = command_line(&args.command);
    let mut decision = route::route(config, &line, &route::facts(assumed));
    if (args.speak || config.announce.speak)
        && decision.distribute
        && let Some(warning) = decision
            .announcement
            .as_deref()
            .and_then(|t| crate::announce::speak(&config.announce, t))
    {
        decision.warnings.push(warning);
    }
    if args.json {
        report::json::print(&decision).map_err(io("writing output"))?;
    } else {
        println!("{}", report::human::decision(&decision, &line));
        for w in &decision.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(exit::OK)
}

fn nodes_cmd(config: &Config, args: NodesArgs) -> Result<u8> {
    if args.probe {
        return Err(Error::Usage(
            "--probe is not available yet in this build".into(),
        ));
    }
    let report = nodes::report(
        config,
        &crate::state::NodeStates::load(),
        route::local_load(),
    );
    if args.json {
        report::json::print(&report).map_err(io("writing output"))?;
    } else {
        print!("{}", report::human::nodes(&report));
    }
    Ok(exit::OK)
}

fn config_show(config: &Config, json: bool) -> Result<u8> {
    if json {
        report::json::print_pretty(config).map_err(io("writing output"))?;
    } else {
        print!("{}", report::human::config(config));
    }
    Ok(exit::OK)
}

fn config_init(path: Option<&Path>, force: bool) -> Result<u8> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => config::user_config_path().ok_or_else(|| {
            Error::Usage(
                "cannot tell where your config directory is: set HOME or pass --path FILE".into(),
            )
        })?,
    };
    if path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(&path, config::STARTER)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    println!(
        "wrote {}; edit it, then check it with `distex config show`",
        path.display()
    );
    Ok(exit::OK)
}

fn json_cmd(config: &Config) -> Result<u8> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let served = json::serve(config, stdin, stdout).map_err(io("serving JSON requests"))?;
    Ok(if served.failed > 0 {
        exit::FAILED
    } else {
        exit::OK
    })
}

fn schema_cmd(kind: SchemaName) -> Result<u8> {
    let kind = match kind {
        SchemaName::Request => SchemaKind::Request,
        SchemaName::Response => SchemaKind::Response,
        SchemaName::Config => SchemaKind::Config,
    };
    report::json::print_pretty(&protocol::schema(kind)).map_err(io("writing output"))?;
    Ok(exit::OK)
}
