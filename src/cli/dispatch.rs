//! From parsed flags to calls into [`crate::commands`], and from results to output.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::{
    CleanArgs, Cli, Command, ConfigCommand, HookCommand, NodesArgs, ParallelArgs, PlanArgs, ProcessArgs, RouteArgs,
    RunArgs, SchemaName,
};
use crate::commands::{json, route};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::protocol::{self, SchemaKind};
use crate::report;

/// Runs the parsed command line; returns the exit status.
pub(crate) fn run(cli: Cli) -> Result<u8> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Route(args) => route_cmd(&config::load(config_flag)?, args),
        Command::Nodes(args) => nodes_cmd(&config::load(config_flag)?, args),
        Command::Config(ConfigCommand::Show { json }) => config_show(&config::load(config_flag)?, json),
        Command::Config(ConfigCommand::Init { path, force }) => config_init(path.as_deref(), force),
        Command::Json => json_cmd(&config::load(config_flag)?),
        Command::Schema(args) => schema_cmd(args.kind),
        Command::Run(args) => run_cmd(&config::load(config_flag)?, args),
        Command::Parallel(args) => parallel_cmd(&config::load(config_flag)?, args),
        Command::Plan(args) => plan_cmd(args),
        Command::Clean(args) => clean_cmd(&config::load(config_flag)?, args),
        // The hook loads the config itself: a broken config must not fail it.
        Command::Hook(HookCommand::PreToolUse) => Ok(crate::hook::pre_tool_use(config_flag)),
        Command::Process(args) => process_cmd(&config::load(config_flag)?, *args),
        Command::Worker { kind } => match kind.as_str() {
            "summary" => Ok(crate::process::regions::summary::main()),
            "scan" => Ok(crate::process::bytes::scan::main()),
            other => Err(Error::Usage(format!("unknown worker {other:?}"))),
        },
        Command::Sandbox { program } => Ok(crate::process::workers::sandbox::main(&program)),
        Command::Reap { program } => Ok(crate::process::workers::reaper::main(&program)),
        Command::Relay { program } => Ok(crate::process::workers::relay::main(&program)),
    }
}

/// Prints `value` as one JSON line, or its human rendering.
fn emit<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<()> {
    if json { output(report::json::print(value)) } else { print_out(&human(value)) }
}

/// `--sync` / `--no-sync`: forced on, forced off, or the rule's default.
fn sync_flag(sync: bool, no_sync: bool) -> Option<bool> {
    if sync {
        Some(true)
    } else if no_sync {
        Some(false)
    } else {
        None
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(context, e)
}

/// What became of writing the output. A reader that went away before the
/// end (`distex ... | head`) is no error, as with other command-line tools:
/// the rest of the output is dropped quietly.
fn output(written: std::io::Result<()>) -> Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(io("writing output")),
    }
}

/// Writes `text` to stdout (see [`output`]).
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    output(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Several words after `--` are joined with spaces; one word is the whole line.
fn command_line(words: &[String]) -> String {
    words.join(" ")
}

fn route_cmd(config: &Config, args: RouteArgs) -> Result<u8> {
    let mut assumed = BTreeMap::new();
    for spec in &args.assume_load {
        let (node, load) = route::parse_assumed_load(spec).map_err(|m| Error::Usage(format!("--assume-load: {m}")))?;
        assumed.insert(node, load);
    }
    route::check_assumed(config, &assumed).map_err(Error::Usage)?;
    let line = command_line(&args.command);
    let mut decision = crate::route::decide_line(config, &line, &crate::state::LoadFacts::read(assumed));
    let speak = (args.speak || config.announce.speak) && decision.distribute;
    let announcement = decision.announcement.as_deref().filter(|_| speak);
    if let Some(warning) = announcement.and_then(|text| crate::announce::speak(&config.announce, text)) {
        decision.warnings.push(warning);
    }
    if args.json {
        output(report::json::print(&decision))?;
    } else {
        print_out(&format!("{}\n", report::human::decision(&decision, &line)))?;
        for w in &decision.warnings {
            eprintln!("warning: {}", report::escape(w));
        }
    }
    Ok(exit::OK)
}

fn nodes_cmd(config: &Config, args: NodesArgs) -> Result<u8> {
    if args.probe {
        return probe_cmd(config, args.json);
    }
    let report = crate::state::NodesReport::read(config);
    emit(args.json, &report, report::human::nodes)?;
    Ok(exit::OK)
}

fn config_show(config: &Config, json: bool) -> Result<u8> {
    if json {
        output(report::json::print_pretty(config))?;
    } else {
        print_out(&report::human::config(config))?;
    }
    Ok(exit::OK)
}

fn config_init(path: Option<&Path>, force: bool) -> Result<u8> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => config::user_config_path().ok_or_else(|| {
            Error::Usage("cannot tell where your config directory is: set HOME or pass --path FILE".into())
        })?,
    };
    if path.exists() && !force {
        return Err(Error::Usage(format!("{} already exists; pass --force to overwrite it", path.display())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(&path, config::STARTER).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    print_out(&format!("wrote {}; edit it, then check it with `distex config show`\n", path.display()))?;
    Ok(exit::OK)
}

fn json_cmd(config: &Config) -> Result<u8> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let served = json::serve(config, stdin, stdout).map_err(io("serving JSON requests"))?;
    Ok(if served.failed > 0 { exit::FAILED } else { exit::OK })
}

fn schema_cmd(kind: SchemaName) -> Result<u8> {
    let kind = match kind {
        SchemaName::Request => SchemaKind::Request,
        SchemaName::Response => SchemaKind::Response,
        SchemaName::Config => SchemaKind::Config,
    };
    output(report::json::print_pretty(&protocol::schema(kind)))?;
    Ok(exit::OK)
}

fn run_cmd(config: &Config, args: RunArgs) -> Result<u8> {
    let timeout = args.timeout;
    let opts = crate::commands::run::RunOptions {
        command: command_line(&args.command),
        node: args.node,
        timeout,
        sync: sync_flag(args.sync, args.no_sync),
        returns: args.returns,
        capture: args.json,
        sync_root: args.sync_root,
    };
    let quiet = args.json;
    let mut on_failover = |a: &crate::exec::run::Attempt, next: Option<&str>| {
        if !quiet {
            match next {
                Some(next) => eprintln!("distex: {} failed ({}); trying {next}", a.node, report::escape(&a.error)),
                None => eprintln!("distex: {} failed ({})", a.node, report::escape(&a.error)),
            }
        }
    };
    let result = crate::commands::run::run(config, &opts, &mut on_failover)?;
    if args.json {
        output(report::json::print(&result))?;
    } else {
        for w in &result.warnings {
            eprintln!("distex: warning: {}", report::escape(w));
        }
        match &result.status {
            crate::exec::RunStatus::Transport { error } => eprintln!("distex: error: {}", report::escape(error)),
            crate::exec::RunStatus::Lost { error, .. } => eprintln!("distex: error: {}", report::escape(error)),
            crate::exec::RunStatus::TimedOut => {
                eprintln!("distex: {} timed out on {}; stopped it", report::escape(&opts.command), result.node)
            }
            _ => {}
        }
    }
    Ok(result.exit_code)
}

fn probe_cmd(config: &Config, json: bool) -> Result<u8> {
    let runtime = crate::exec::runtime().map_err(|e| Error::io("starting the async runtime", e))?;
    let probes = runtime.block_on(crate::exec::probe::probe_all(config));
    let report = crate::state::NodesReport::read(config);
    emit(json, &report, report::human::nodes)?;
    Ok(if probes.iter().all(|p| p.answered) { exit::OK } else { exit::FAILED })
}

/// Tasks from `--file` (JSON) or from the command words.
fn task_specs(file: Option<&Path>, commands: &[String]) -> Result<Vec<crate::tasks::plan::TaskSpec>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TaskFile {
        tasks: Vec<crate::tasks::plan::TaskSpec>,
    }
    let Some(file) = file else { return Ok(crate::commands::parallel::specs_from_commands(commands)) };
    if !commands.is_empty() {
        return Err(Error::Usage("give tasks either with --file or as commands, not both".into()));
    }
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(io("reading tasks from stdin"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?
    };
    let parsed: TaskFile = serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
    Ok(parsed.tasks)
}

fn plan_cmd(args: PlanArgs) -> Result<u8> {
    let specs = task_specs(args.file.as_deref(), &args.commands)?;
    let plan = crate::commands::parallel::make_plan(&specs)?;
    emit(args.json, &plan, report::tasks::plan)?;
    Ok(exit::OK)
}

fn parallel_cmd(config: &Config, args: ParallelArgs) -> Result<u8> {
    let specs = task_specs(args.file.as_deref(), &args.commands)?;
    let plan = crate::commands::parallel::make_plan(&specs)?;
    let timeout = args.timeout;
    let opts = crate::tasks::scheduler::ParallelOptions {
        jobs: args.jobs,
        keep_going: args.keep_going,
        nodes: args.nodes,
        sync: sync_flag(args.sync, args.no_sync),
        timeout,
        cwd: std::env::current_dir().map_err(io("reading the current directory"))?,
        sync_root: args.sync_root,
    };
    let mut reporter: Box<dyn crate::tasks::Reporter> = match (args.events, args.json) {
        (true, _) => Box::new(report::tasks::JsonLinesReporter),
        (false, true) => Box::new(crate::tasks::NullReporter),
        (false, false) => Box::new(report::tasks::HumanReporter),
    };
    let result = crate::commands::parallel::run(config, &plan, &opts, reporter.as_mut())?;
    if args.json {
        output(report::json::print(&result))?;
    }
    Ok(result.exit_code())
}

fn process_cmd(config: &Config, args: ProcessArgs) -> Result<u8> {
    use crate::process;
    let (json, events) = (args.json, args.events);
    let options = process_options(config, args);
    process::check_options(&options).map_err(Error::Usage)?;
    process::workers::local::handle_interrupts();
    let result = if events {
        let mut events = |event: &crate::tasks::Event| {
            let _ = report::json::print(event);
        };
        process::run(&options, config, &mut events)
    } else if json {
        process::run(&options, config, &mut crate::tasks::NullReporter)
    } else {
        let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut human = report::process_human::ProcessHuman::new(std::io::stdout(), live);
        process::run(&options, config, &mut human)
    };
    let report = match result {
        Ok(report) => report,
        Err(e) if process::workers::local::interrupted() => {
            eprintln!("distex: error: {}", super::shown(&e));
            return Ok(exit::INTERRUPTED);
        }
        Err(e) => return Err(e),
    };
    if json || events {
        output(report::process_json::print(&report))?;
    } else {
        print_out(&report::process_human::results(&report))?;
    }
    let complete = report.complete;
    // The process exits next: freeing thousands of regions one by one
    // would only delay it.
    std::mem::forget(report);
    Ok(if process::workers::local::interrupted() {
        exit::INTERRUPTED
    } else if complete {
        exit::OK
    } else {
        exit::INCOMPLETE
    })
}

/// The engine's options from `distex process`'s flags (the report flags,
/// `--json` and `--events`, stay with the caller), with `[process] pass_env`
/// from the config before `--pass-env`.
fn process_options(config: &Config, args: ProcessArgs) -> crate::process::ProcessOptions {
    use crate::process::workers::local::Limits;
    let defaults = Limits::default();
    crate::process::ProcessOptions {
        inputs: args.inputs,
        by: args.by,
        regions: args.regions,
        demo: args.demo,
        format: args.format.map(Into::into),
        schema: args.schema.into_iter().flatten().collect(),
        processor: args.processor,
        aggregate: args.aggregate,
        jobs: args.jobs,
        retries: args.retries,
        max_rejects: args.max_rejects,
        max_record_size: args.max_record_size.unwrap_or(crate::process::input::DEFAULT_MAX_RECORD),
        limits: Limits {
            max_memory: args.max_memory,
            max_cpu_seconds: args.max_cpu_seconds,
            max_output: args.max_output.unwrap_or(defaults.max_output),
            max_open_files: args.max_open_files,
            timeout: args.timeout.map(|t| t.as_secs_f64()),
            grace: args.grace.as_secs_f64(),
        },
        sandbox: args.sandbox,
        pass_env: config.process.pass_env.iter().cloned().chain(args.pass_env).collect(),
        allow_connect: args.allow_connect,
        keep_workdirs: args.keep_workdirs,
        nodes: args.nodes,
        part_size: args.part_size,
        split: args.split.into(),
    }
}

fn clean_cmd(config: &Config, args: CleanArgs) -> Result<u8> {
    let report = crate::exec::clean::clean(config, args.remote).map_err(io("starting the async runtime"))?;
    emit(args.json, &report, report::human::clean)?;
    if !args.json {
        for node in report.nodes.iter().filter(|n| n.error.is_some()) {
            eprintln!("distex: {}: {}", node.node, report::escape(node.error.as_deref().unwrap_or_default()));
        }
    }
    Ok(if report.complete() { exit::OK } else { exit::FAILED })
}
