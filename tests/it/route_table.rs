//! The routing table: over a hundred command lines and where they must go.
//!
//! Every case runs through the real binary (`distex json`, one request per
//! line, so the whole table costs one process) against a three-node
//! cluster. A third of the cases mention docker, make, pytest, ... only as
//! arguments, strings, file names or comments and must stay local.

use crate::util as support;

use serde_json::{Value, json};
use support::Sandbox;

const CLUSTER: &str = r#"
[local]
name = "laptop"
os = "macos"
slots = 4

[[node]]
name = "macpro51"
host = "macpro51.local"
os = "linux"
features = ["docker", "podman", "apt", "systemd"]
roles = ["builder"]
slots = 12
speed = 2.0
label = "Mac Pro"

[[node]]
name = "studio"
host = "studio.local"
os = "macos"
roles = ["builder"]
slots = 8

[[node]]
name = "gpu"
host = "gpu.local"
os = "linux"
features = ["gpu"]
slots = 4

[[rule]]
name = "gpu_training"
commands = ["python train.py", "torchrun"]
requires = { features = ["gpu"] }
announce = "Sending training to {node}."

[[rule]]
name = "terraform"
pattern = '^terraform (plan|apply)\b'
requires = { roles = ["builder"] }
"#;

const LINUX: &str = "linux_required";
const HEAVY: &str = "heavy_computation";
const GPU: &str = "gpu_training";

/// (command line, expected node or "local", expected rule or "", why)
const CASES: &[(&str, &str, &str, &str)] = &[
    // Linux-only commands, however they are wrapped or nested.
    ("docker ps", "macpro51", LINUX, ""),
    ("docker compose up -d", "macpro51", LINUX, ""),
    ("docker-compose build", "macpro51", LINUX, ""),
    ("podman run --rm alpine true", "macpro51", LINUX, ""),
    ("sudo apt-get install -y jq", "macpro51", LINUX, ""),
    ("sudo apt update", "macpro51", LINUX, ""),
    ("yum install gcc", "macpro51", LINUX, ""),
    ("dnf upgrade -y", "macpro51", LINUX, ""),
    ("systemctl restart nginx", "macpro51", LINUX, ""),
    ("journalctl -u nginx -f", "macpro51", LINUX, ""),
    ("sudo -u root systemctl status sshd", "macpro51", LINUX, ""),
    ("/usr/bin/docker images", "macpro51", LINUX, ""),
    ("env DOCKER_HOST=tcp://x docker ps", "macpro51", LINUX, ""),
    ("FOO=1 BAR=2 docker build .", "macpro51", LINUX, ""),
    ("time docker build -t app .", "macpro51", LINUX, ""),
    ("nice -n 10 docker build .", "macpro51", LINUX, ""),
    ("nohup docker run app &", "macpro51", LINUX, ""),
    ("timeout -s KILL 30 docker ps", "macpro51", LINUX, ""),
    ("command docker ps", "macpro51", LINUX, ""),
    ("bash -c 'docker ps'", "macpro51", LINUX, ""),
    ("sh -c \"apt-get update && apt-get install -y curl\"", "macpro51", LINUX, ""),
    ("echo $(docker ps -q)", "macpro51", LINUX, ""),
    ("echo `docker ps -q`", "macpro51", LINUX, ""),
    ("(cd app && docker build .)", "macpro51", LINUX, ""),
    ("{ docker ps; }", "macpro51", LINUX, ""),
    ("docker ps -aq | xargs docker rm", "macpro51", LINUX, ""),
    ("cat ids | sudo xargs -n1 docker stop", "macpro51", LINUX, ""),
    ("if docker info >/dev/null; then echo up; fi", "macpro51", LINUX, ""),
    ("for c in a b; do docker stop $c; done", "macpro51", LINUX, ""),
    ("git pull && docker compose up -d", "macpro51", LINUX, ""),
    ("\"docker\" ps", "macpro51", LINUX, ""),
    ("sudo -E env PATH=$PATH docker ps", "macpro51", LINUX, ""),
    ("eval \"docker ps\"", "macpro51", LINUX, ""),
    ("while true; do journalctl -n 1; sleep 1; done", "macpro51", LINUX, ""),
    ("docker build . && make", "macpro51", LINUX, ""),
    ("diff <(docker ps) saved.txt", "macpro51", LINUX, ""),
    ("X=$(docker ps -q) ls", "macpro51", LINUX, ""),
    // Heavy builds and test suites go to a builder (macpro51 is first).
    ("make", "macpro51", HEAVY, ""),
    ("make -j8 all", "macpro51", HEAVY, ""),
    ("cargo build --release", "macpro51", HEAVY, ""),
    ("cargo +nightly build", "macpro51", HEAVY, ""),
    ("cargo test --workspace", "macpro51", HEAVY, ""),
    ("go build ./...", "macpro51", HEAVY, ""),
    ("npm run build", "macpro51", HEAVY, ""),
    ("npm run build:prod", "macpro51", HEAVY, ""),
    ("pytest -x tests/", "macpro51", HEAVY, ""),
    ("python -m pytest", "macpro51", HEAVY, ""),
    ("python3 -m pytest -q", "macpro51", HEAVY, ""),
    ("jest --coverage", "macpro51", HEAVY, ""),
    ("npx jest", "macpro51", HEAVY, ""),
    ("gradle assemble", "macpro51", HEAVY, ""),
    ("./gradlew test", "macpro51", HEAVY, ""),
    ("cd project && make test", "macpro51", HEAVY, ""),
    ("RUSTFLAGS=-Cdebuginfo=0 cargo build", "macpro51", HEAVY, ""),
    ("bash -lc 'cd x && cargo build'", "macpro51", HEAVY, ""),
    ("uv run pytest", "macpro51", HEAVY, ""),
    ("poetry run pytest -k slow", "macpro51", HEAVY, ""),
    ("time cargo test", "macpro51", HEAVY, ""),
    ("cmake --build build", "macpro51", HEAVY, ""),
    ("cargo fmt && cargo test 2>&1 | tail -5", "macpro51", HEAVY, ""),
    // A user rule.
    ("python train.py --epochs 3", "gpu", GPU, ""),
    ("torchrun --nproc_per_node 4 train.py", "gpu", GPU, ""),
    // Mentioned only as arguments, strings, file names or comments: local.
    ("echo \"docker is great\"", "local", "", "named only as an argument, string, file or comment"),
    ("cat Makefile", "local", "", "named only as an argument, string, file or comment"),
    ("git commit -m \"fix docker\"", "local", "", "named only as an argument, string, file or comment"),
    ("which docker", "local", "", "named only as an argument, string, file or comment"),
    ("command -v docker", "local", "", "named only as an argument, string, file or comment"),
    ("type docker", "local", "", "named only as an argument, string, file or comment"),
    ("man docker", "local", "", "named only as an argument, string, file or comment"),
    ("ls # docker ps", "local", "", "named only as an argument, string, file or comment"),
    ("echo make", "local", "", "named only as an argument, string, file or comment"),
    ("vim docker-compose.yml", "local", "", "named only as an argument, string, file or comment"),
    ("grep -r pytest .", "local", "", "named only as an argument, string, file or comment"),
    ("cat docker/Dockerfile", "local", "", "named only as an argument, string, file or comment"),
    ("cd make && ls", "local", "", "named only as an argument, string, file or comment"),
    ("rm -rf target/ # cargo build later", "local", "", "named only as an argument, string, file or comment"),
    ("echo 'cargo build'", "local", "", "named only as an argument, string, file or comment"),
    ("printf '%s\\n' \"apt-get install\"", "local", "", "named only as an argument, string, file or comment"),
    ("git log --grep=docker", "local", "", "named only as an argument, string, file or comment"),
    ("brew install docker", "local", "", "named only as an argument, string, file or comment"),
    ("ls /usr/bin/docker", "local", "", "named only as an argument, string, file or comment"),
    ("touch pytest.ini", "local", "", "named only as an argument, string, file or comment"),
    ("code jest.config.js", "local", "", "named only as an argument, string, file or comment"),
    ("open Makefile", "local", "", "named only as an argument, string, file or comment"),
    ("find . -name '*.gradle'", "local", "", "named only as an argument, string, file or comment"),
    ("cp Makefile Makefile.bak", "local", "", "named only as an argument, string, file or comment"),
    ("echo \"$(echo docker)\"", "local", "", "named only as an argument, string, file or comment"),
    ("export CMD=docker", "local", "", "docker is a value being assigned"),
    ("alias dc=docker-compose", "local", "", "named only as an argument, string, file or comment"),
    ("history | grep make", "local", "", "named only as an argument, string, file or comment"),
    ("cargo check", "local", "", "type-checks only; incremental and quick here"),
    ("cargo fmt", "local", "", "rewrites files here"),
    ("go vet ./...", "local", "", "static checks, quick"),
    ("npm run lint", "local", "", "lint is not a build or test script"),
    ("python train_small.py", "local", "", "the gpu rule names train.py, not this script"),
    ("pip install pytest", "local", "", "installs into this machine's environment"),
    ("npm install jest", "local", "", "node_modules belong here"),
    ("ssh macpro51 docker ps", "local", "", "the user already chose where it runs"),
    ("docker_cleanup.sh", "local", "", "named only as an argument, string, file or comment"),
    ("./make.sh", "local", "", "named only as an argument, string, file or comment"),
    ("echo \"make -j8\" > build.txt", "local", "", "named only as an argument, string, file or comment"),
    ("cat <<'EOF'\ndocker ps\nEOF", "local", "", "named only as an argument, string, file or comment"),
    ("git stash && git checkout main", "local", "", "git acts on this checkout"),
    ("sudo -v", "local", "", "refreshes sudo here, runs nothing"),
    ("env | grep DOCKER", "local", "", "DOCKER is grep's pattern"),
    ("cmake .", "local", "", "configuring is light; only cmake --build is heavy"),
    ("echo apt-get; echo systemctl", "local", "", "echo's arguments"),
    ("ls -la", "local", "", "nothing heavy"),
    // ---- Realistic agent command lines (issue 15): spellings of the same command.
    ("cargo b -r", "macpro51", HEAVY, "cargo's own alias for build --release"),
    ("cargo t", "macpro51", HEAVY, "cargo's alias for test"),
    ("cargo t -p distex --lib 2>&1 | tail -20", "macpro51", HEAVY, "test alias, output piped here"),
    ("cargo --manifest-path crates/core/Cargo.toml build", "macpro51", HEAVY, "--manifest-path takes a value"),
    ("cargo -Zunstable-options build --artifact-dir out", "macpro51", HEAVY, "-Z before the subcommand"),
    ("cargo nextest run --workspace", "macpro51", HEAVY, "the whole test suite"),
    ("cargo bench --bench parse", "macpro51", HEAVY, "benchmarks are heavy"),
    ("go -C services/api build ./...", "macpro51", HEAVY, "-C takes a directory"),
    ("go test -race -count=1 ./...", "macpro51", HEAVY, "race-enabled test suite"),
    ("npm test", "macpro51", HEAVY, "the test script"),
    ("npm run test", "macpro51", HEAVY, "same as npm test"),
    ("npm run test:e2e", "macpro51", HEAVY, "a test script variant"),
    ("npm t", "macpro51", HEAVY, "npm's alias for test"),
    ("npm --prefix frontend run build", "macpro51", HEAVY, "--prefix takes a value"),
    ("npm -w web run build", "macpro51", HEAVY, "-w takes a workspace name"),
    ("npm run build --workspace=packages/ui", "macpro51", HEAVY, "build script of one workspace"),
    ("yarn test", "macpro51", HEAVY, "yarn runs the test script"),
    ("yarn build", "macpro51", HEAVY, "yarn runs the build script"),
    ("yarn run build", "macpro51", HEAVY, "explicit run"),
    ("yarn workspace @acme/web build", "macpro51", HEAVY, "build script in one workspace"),
    ("yarn jest --ci", "macpro51", HEAVY, "yarn runs the jest binary"),
    ("yarn --cwd packages/api test", "macpro51", HEAVY, "--cwd takes a value"),
    ("pnpm test", "macpro51", HEAVY, "pnpm runs the test script"),
    ("pnpm run build", "macpro51", HEAVY, "explicit run"),
    ("pnpm build", "macpro51", HEAVY, "pnpm runs the build script"),
    ("pnpm --filter @acme/web build", "macpro51", HEAVY, "--filter takes a value"),
    ("pnpm -F web test -- --runInBand", "macpro51", HEAVY, "-F takes a value"),
    ("pnpm -r build", "macpro51", HEAVY, "recursive build"),
    ("pnpm vitest run", "macpro51", HEAVY, "pnpm runs the vitest binary"),
    ("bun test", "macpro51", HEAVY, "bun's test runner"),
    ("bun run build", "macpro51", HEAVY, "build script"),
    ("npx vitest run --reporter=dot", "macpro51", HEAVY, "vitest through npx"),
    ("npx playwright test", "macpro51", HEAVY, "browser test suite"),
    ("vitest run src/", "macpro51", HEAVY, "test suite"),
    ("python -X dev -m pytest", "macpro51", HEAVY, "-X takes a value"),
    ("python3 -W error -m pytest tests/unit", "macpro51", HEAVY, "-W takes a value"),
    ("python3.12 -m pytest -x -q", "macpro51", HEAVY, "versioned python"),
    ("uv run -p 3.12 pytest", "macpro51", HEAVY, "-p takes a python version"),
    ("uv run --with pytest-xdist pytest -n auto", "macpro51", HEAVY, "--with takes a package"),
    ("uv run -m pytest", "macpro51", HEAVY, "uv run -m runs python -m"),
    ("uvx tox -e py312", "macpro51", HEAVY, "tox through uvx"),
    ("hatch run pytest", "macpro51", HEAVY, "hatch run"),
    ("pdm run pytest -q", "macpro51", HEAVY, "pdm run"),
    ("conda run -n ml pytest", "macpro51", HEAVY, "-n takes an env name"),
    ("nox -s tests-3.12", "macpro51", HEAVY, "nox sessions run test suites"),
    ("python -m tox -e lint,py311", "macpro51", HEAVY, "tox as a module"),
    ("tox -p auto", "macpro51", HEAVY, "parallel tox"),
    // ---- Coverage by extension.
    ("bazel build //...", "macpro51", HEAVY, "bazel build"),
    ("bazel test //services/... --test_output=errors", "macpro51", HEAVY, "bazel test"),
    ("bazelisk build //app:all", "macpro51", HEAVY, "bazelisk is bazel"),
    ("ctest --test-dir build --output-on-failure", "macpro51", HEAVY, "ctest runs a test suite"),
    ("meson compile -C builddir", "macpro51", HEAVY, "meson compile"),
    ("meson test -C builddir --print-errorlogs", "macpro51", HEAVY, "meson test"),
    ("ninja -C build", "macpro51", HEAVY, "ninja builds"),
    ("cmake --build build --parallel 8", "macpro51", HEAVY, "cmake --build"),
    ("cmake -S . -B build && cmake --build build -j", "macpro51", HEAVY, "configure here, build there"),
    ("mvn -q package -DskipTests", "macpro51", HEAVY, "maven package"),
    ("./mvnw verify", "macpro51", HEAVY, "maven wrapper"),
    ("./gradlew :app:assembleDebug", "macpro51", HEAVY, "gradle wrapper task"),
    ("gradle test --tests 'com.acme.*'", "macpro51", HEAVY, "gradle test"),
    ("dotnet test MySolution.sln", "macpro51", HEAVY, "dotnet test"),
    ("dotnet build -c Release", "macpro51", HEAVY, "dotnet build"),
    ("zig build test", "macpro51", HEAVY, "zig build"),
    ("mix test", "macpro51", HEAVY, "elixir tests"),
    ("dune build @runtest", "macpro51", HEAVY, "ocaml build"),
    ("turbo run build --filter=web", "macpro51", HEAVY, "turbo build"),
    ("nx run-many -t test", "macpro51", HEAVY, "nx test all projects"),
    ("sbt test", "macpro51", HEAVY, "scala build tool"),
    ("mocha 'test/**/*.spec.js'", "macpro51", HEAVY, "mocha test suite"),
    ("bundle exec rspec spec/models", "macpro51", HEAVY, "ruby test suite"),
    ("bin/rails test test/models", "macpro51", HEAVY, "rails tests"),
    ("vendor/bin/phpunit --testdox", "macpro51", HEAVY, "php test suite"),
    (
        "source venv/bin/activate && python manage.py test",
        "macpro51",
        HEAVY,
        "django tests, with the venv, on the node",
    ),
    ("flutter test", "macpro51", HEAVY, "flutter tests"),
    ("deno test -A", "macpro51", HEAVY, "deno tests"),
    ("npx nx affected -t test", "macpro51", HEAVY, "nx tests of affected projects"),
    ("python manage.py runserver", "local", "", "a dev server here"),
    ("npm ls jest", "local", "", "lists installed packages here"),
    ("npm view jest version", "local", "", "a registry lookup"),
    ("cargo metadata --format-version 1 | jq '.packages | length'", "local", "", "reads Cargo.toml, quick"),
    ("make -p | grep CFLAGS", "local", "", "prints make's database"),
    ("make print-CFLAGS", "local", "", "the print-VAR idiom prints a variable"),
    ("sudo systemctl --version", "local", "", "a version"),
    ("open -a Docker", "local", "", "starts Docker Desktop here"),
    ("python -m pytest --version", "local", "", "a version"),
    ("python -c \"import subprocess; subprocess.run(['make'])\"", "local", "", "make is inside a Python string"),
    ("echo \"cargo build\" | pbcopy", "local", "", "copies text"),
    ("docker info > /dev/null 2>&1 && echo running", "macpro51", LINUX, "docker info runs on the Linux node"),
    ("python manage.py migrate", "local", "", "migrates the local database"),
    ("kubectl get pods -A", "local", "", "talks to the cluster from here"),
    ("cargo doc --no-deps --open", "local", "", "opens docs here"),
    ("git bisect run make test", "local", "", "bisect needs the repository here"),
    ("apt-cache policy nginx", "macpro51", LINUX, "apt-cache is Debian's"),
    ("apt-cache search libssl", "macpro51", LINUX, "apt-cache is Debian's"),
    ("buildah bud -t app .", "macpro51", LINUX, "buildah builds OCI images on Linux"),
    ("skopeo inspect docker://alpine", "macpro51", LINUX, "Linux container tool"),
    ("sudo service nginx reload", "macpro51", LINUX, "SysV service"),
    ("systemd-analyze blame | head -20", "macpro51", LINUX, "systemd is Linux"),
    ("dpkg -l | grep libc6", "macpro51", LINUX, "Debian package database"),
    ("strace -f -e trace=open ./app", "macpro51", LINUX, "strace is Linux-only"),
    ("perf stat -e cycles ./bench", "macpro51", LINUX, "perf is Linux-only"),
    ("nerdctl ps", "macpro51", LINUX, "containerd CLI"),
    ("podman-compose up -d", "macpro51", LINUX, "podman compose"),
    ("sudo apt-get update && sudo apt-get install -y build-essential", "macpro51", LINUX, "apt on Linux"),
    ("docker compose -f docker-compose.test.yml run --rm tests", "macpro51", LINUX, "docker compose"),
    ("docker --context remote ps", "macpro51", LINUX, "--context takes a value"),
    // ---- Wrappers looked through.
    ("caffeinate -i make -j8", "macpro51", HEAVY, "caffeinate keeps a Mac awake while make runs"),
    ("caffeinate -dimsu -t 3600 cargo build --release", "macpro51", HEAVY, "-t takes seconds"),
    ("arch -x86_64 make", "macpro51", HEAVY, "arch runs make"),
    ("bash <<'EOF'\nset -e\ncd app\nmake -j4\nEOF", "macpro51", HEAVY, "a script on bash's stdin"),
    ("bash -s <<< 'cargo test'", "macpro51", HEAVY, "a here-string script"),
    ("sh <<EOF\ndocker ps\nEOF", "macpro51", LINUX, "sh reads the heredoc"),
    ("flock /tmp/build.lock make", "macpro51", HEAVY, "flock's first operand is the lock file"),
    ("xvfb-run -a npm test", "macpro51", HEAVY, "virtual display for tests"),
    ("op run --env-file .env -- docker compose up", "macpro51", LINUX, "1Password CLI wraps docker"),
    ("direnv exec . make test", "macpro51", HEAVY, "direnv exec DIR cmd"),
    ("dotenv -e .env.test -- npm test", "macpro51", HEAVY, "dotenv-cli wrapper"),
    ("nice -n 19 ionice -c3 make -j2", "macpro51", HEAVY, "nested wrappers"),
    ("stdbuf -oL pytest -x | tee pytest.log", "macpro51", HEAVY, "stdbuf wraps pytest"),
    ("sudo -E make -C kernel modules", "macpro51", HEAVY, "sudo runs make"),
    ("timeout 600 cargo test -- --nocapture", "macpro51", HEAVY, "timeout DURATION cmd"),
    ("time make -j8 2>&1 | tail -3", "macpro51", HEAVY, "timed build"),
    ("env -C sub make", "macpro51", HEAVY, "env -C takes a directory"),
    // ---- Whole lines of the kind an agent writes.
    ("cd /Users/me/src/app && cargo build 2>&1 | tail -30", "macpro51", HEAVY, "build with cd and tail"),
    ("cd frontend && npm run build 2>&1 | head -50", "macpro51", HEAVY, "build in a subdirectory"),
    ("cd backend && python -m pytest tests/ -x -q 2>&1 | tail -40", "macpro51", HEAVY, "tests with tail"),
    ("RUST_BACKTRACE=1 cargo test parse_ -- --nocapture 2>&1 | head -100", "macpro51", HEAVY, "env prefix"),
    ("CI=true npm test -- --watchAll=false", "macpro51", HEAVY, "CI test run"),
    ("NODE_ENV=production npm run build", "macpro51", HEAVY, "env prefix"),
    ("GOFLAGS=-mod=mod go test ./internal/...", "macpro51", HEAVY, "env prefix"),
    ("make clean && make -j8", "macpro51", HEAVY, "clean here, build there"),
    ("git pull --rebase && cargo build --release", "macpro51", HEAVY, "pull here, build there"),
    ("git add -A && git commit -m wip && make", "macpro51", HEAVY, "commit here, build there"),
    ("echo 'int x;' > gen.h && make", "macpro51", HEAVY, "the header is made here, then synced"),
    ("mkdir -p build && cd build && cmake .. && make -j$(nproc)", "macpro51", HEAVY, "configure here, build there"),
    ("make -j8 > build.log 2>&1; echo exit=$?", "macpro51", HEAVY, "log written here"),
    ("cargo build --release && git push", "macpro51", HEAVY, "push is independent of the build"),
    ("cargo build --release && ./target/release/app --help", "macpro51", HEAVY, "runs what it built: kept on the node"),
    ("make && ./run_tests", "macpro51", HEAVY, "test binary built there, run there"),
    ("cargo fmt --check && cargo clippy -- -D warnings && cargo test", "macpro51", HEAVY, "the tests are heavy"),
    ("npm ci && npm test", "macpro51", HEAVY, "install then test, together on the node"),
    ("pytest -q tests/test_api.py::test_login -vv", "macpro51", HEAVY, "pytest"),
    ("pytest --lf -x 2>&1 | tail -n 50", "macpro51", HEAVY, "re-run failures"),
    ("pytest -v", "macpro51", HEAVY, "-v is verbose for pytest, not a version"),
    ("ctest -V", "macpro51", HEAVY, "-V is verbose for ctest"),
    ("(cd services/api && go test ./...) 2>&1 | tail -20", "macpro51", HEAVY, "subshell with go test"),
    ("for d in a b c; do make -C $d; done", "macpro51", HEAVY, "a loop of builds"),
    ("make test || (echo 'tests failed'; exit 1)", "macpro51", HEAVY, "test with a fallback message"),
    ("docker build -t app:dev . && docker run --rm app:dev", "macpro51", LINUX, "docker both times"),
    ("docker compose logs --tail=100 api", "macpro51", LINUX, "docker logs"),
    ("terraform plan -out=tf.plan", "macpro51", "terraform", "user pattern rule"),
    ("cd infra && terraform apply -auto-approve", "macpro51", "terraform", "user pattern rule after cd"),
    ("torchrun --nproc_per_node=8 train.py --config cfg.yaml", "gpu", GPU, "user rule: training"),
    ("CUDA_VISIBLE_DEVICES=0 python train.py", "gpu", GPU, "user rule with env prefix"),
    ("xcodebuild -scheme App build", "local", "macos_required", "needs macOS; this Mac has it"),
    ("xcrun simctl list devices", "local", "macos_required", "needs macOS; this Mac has it"),
    ("make && make install", "local", HEAVY, "installs here what it builds: whole line stays here"),
    ("cargo build --release && cp target/release/app ~/bin/", "local", HEAVY, "copies the build into ~/bin here"),
    // ---- Traps that must stay local.
    ("pytest --version", "local", "", "prints a version"),
    ("make --version", "local", "", "prints a version"),
    ("cargo build --help", "local", "", "prints help"),
    ("make -n", "local", "", "dry run only prints commands"),
    ("make -n install | head", "local", "", "dry run"),
    ("make --dry-run all", "local", "", "dry run"),
    ("go help test", "local", "", "prints help"),
    ("cargo help build", "local", "", "prints help"),
    ("docker --version", "local", "", "prints the local client's version"),
    ("npm test --help", "local", "", "prints help"),
    ("jest --version", "local", "", "prints a version"),
    ("pytest --collect-only -q", "local", "", "lists tests without running them"),
    ("gradle --version", "local", "", "prints a version"),
    ("npm --prefix frontend run lint", "local", "", "lint, with a prefix value that is not a subcommand"),
    ("pnpm --filter @acme/web lint", "local", "", "lint script"),
    ("npm -w web run dev", "local", "", "a dev server the user opens here"),
    ("npm run dev", "local", "", "dev server"),
    ("npm start", "local", "", "starts the app here"),
    ("yarn dev", "local", "", "dev server"),
    ("pnpm install --frozen-lockfile", "local", "", "node_modules belong here"),
    ("yarn add -D vitest", "local", "", "changes package.json here"),
    ("bun install", "local", "", "installs dependencies here"),
    ("npm run typecheck", "local", "", "type check, quick"),
    ("npx tsc --noEmit", "local", "", "type check, quick"),
    ("npx eslint . --fix", "local", "", "rewrites files here"),
    ("npx prettier --write src", "local", "", "rewrites files here"),
    ("uv run --with pytest python scripts/report.py", "local", "", "runs a script, not pytest"),
    ("uv run ruff check .", "local", "", "linter"),
    ("uv sync", "local", "", "installs the environment here"),
    ("uv pip install -e .", "local", "", "installs here"),
    ("poetry install", "local", "", "installs here"),
    ("python -m venv .venv", "local", "", "creates a venv here"),
    ("python -c 'import pytest; print(pytest.__version__)'", "local", "", "pytest named inside a Python string"),
    ("python scripts/gen_docs.py", "local", "", "a plain script"),
    ("python -m pip install -r requirements.txt", "local", "", "installs here"),
    ("go -C sub vet ./...", "local", "", "vet, after -C's value"),
    ("go mod tidy", "local", "", "edits go.mod here"),
    ("go run ./cmd/server", "local", "", "runs a server here"),
    ("go install golang.org/x/tools/gopls@latest", "local", "", "installs here"),
    ("cargo install ripgrep", "local", "", "installs into ~/.cargo/bin here"),
    ("cargo clippy --all-targets -- -D warnings", "local", "", "check-like: incremental and quick here"),
    ("cargo run --release -- --help", "local", "", "runs the program here"),
    ("cargo add serde --features derive", "local", "", "edits Cargo.toml"),
    ("cargo update -p regex", "local", "", "edits Cargo.lock"),
    ("cargo clean", "local", "", "deletes target here"),
    ("cargo --manifest-path a/Cargo.toml check", "local", "", "check after a value"),
    ("make install", "local", "", "installs on this machine"),
    ("sudo make install", "local", "", "installs on this machine"),
    ("make clean", "local", "", "cleans this tree"),
    ("make help", "local", "", "prints targets"),
    ("make -C docs serve", "local", "", "serves docs here"),
    ("mvn install -DskipTests", "local", "", "installs into ~/.m2 here"),
    ("./gradlew installDebug", "local", "", "installs onto the attached device"),
    ("./gradlew --stop", "local", "", "stops the local daemon"),
    ("jest --watch", "local", "", "watch mode keeps running here"),
    ("npx vitest --watch", "local", "", "watch mode"),
    ("cargo watch -x test", "local", "", "watch mode"),
    ("ls target/release", "local", "", "lists files"),
    ("cat build.log | tail -50", "local", "", "reads a log"),
    ("tail -f build.log", "local", "", "follows a log"),
    ("grep -rn 'make' Makefile", "local", "", "make is grep's pattern"),
    ("rg 'docker run' docs/", "local", "", "searched text"),
    ("git diff HEAD~1 -- Makefile", "local", "", "git"),
    ("git log --oneline -5", "local", "", "git"),
    ("git commit -m 'make tests faster'", "local", "", "commit message"),
    ("gh pr create --title 'Fix cargo test flake' --body 'x'", "local", "", "text arguments"),
    ("echo 'Run: make test' >> README.md", "local", "", "text written to a file"),
    ("sed -i '' 's/pytest/py.test/' setup.cfg", "local", "", "text substitution"),
    ("cat > run.sh <<'EOF'\n#!/bin/sh\nmake -j8\nEOF", "local", "", "writes a script, does not run it"),
    ("chmod +x scripts/build.sh", "local", "", "file mode"),
    ("mkdir -p build", "local", "", "creates a directory"),
    ("rm -rf node_modules dist", "local", "", "deletes files here"),
    ("brew install cmake ninja", "local", "", "installs here"),
    ("which pytest && pytest --version", "local", "", "lookups and versions"),
    ("type -a make", "local", "", "lookup"),
    ("command -v docker >/dev/null || echo 'no docker'", "local", "", "lookup"),
    ("docker_build_helper --dry-run", "local", "", "a different program"),
    ("./scripts/test.sh", "local", "", "a project script: unknown contents"),
    ("open build/index.html", "local", "", "opens a file here"),
    ("code .", "local", "", "editor"),
    ("kill %1", "local", "", "job control"),
    ("ps aux | grep make", "local", "", "make is grep's pattern"),
    ("pgrep -f pytest", "local", "", "process lookup"),
    ("pkill -f 'jest --watch'", "local", "", "kills a local process"),
    ("lsof -i :3000", "local", "", "local ports"),
    ("curl -s localhost:8080/health", "local", "", "local server"),
    ("tar czf dist.tgz dist/", "local", "", "archives here"),
    ("du -sh target", "local", "", "disk usage here"),
    ("df -h", "local", "", "disk space here"),
    ("nproc", "local", "", "machine info"),
    ("sysctl -n hw.ncpu", "local", "", "machine info"),
    ("ssh builder 'cd src && make'", "local", "", "the user runs it remotely already"),
    ("scp build/app host:/tmp/", "local", "", "copies files"),
    ("rsync -a dist/ server:/srv/www/", "local", "", "copies files"),
    ("watch -n 5 'docker ps'", "local", "", "watch is interactive; docker ps is its string"),
    ("hyperfine 'make -j8'", "local", "", "benchmarks here; make is a string"),
    ("xargs -a files.txt echo make", "local", "", "echo runs, make is an argument"),
    ("find . -name Makefile -exec cat {} \\;", "local", "", "cat runs"),
    ("printf 'docker ps\\n' > cmds.txt", "local", "", "text"),
    ("export PATH=\"$HOME/.cargo/bin:$PATH\"", "local", "", "shell setup"),
    ("source .venv/bin/activate", "local", "", "shell setup"),
    ("nvm use 20", "local", "", "shell setup"),
    ("node --version && npm --version", "local", "", "versions"),
    ("python3 --version", "local", "", "version"),
    ("rustup target add wasm32-unknown-unknown", "local", "", "toolchain here"),
    ("cmake -S . -B build -G Ninja", "local", "", "configure only"),
    ("meson setup builddir", "local", "", "configure only"),
    ("bazel info workspace", "local", "", "info, not a build"),
    ("bazel query 'deps(//app)'", "local", "", "query, not a build"),
    ("bazel run //tools:gen", "local", "", "runs a tool here"),
    ("docker-credential-helper list", "local", "", "a different program"),
    ("echo \"$(which docker)\"", "local", "", "which is a lookup"),
    ("test -f Makefile && echo yes", "local", "", "test is the builtin"),
    ("[ -d build ] || mkdir build", "local", "", "directory setup"),
    ("make 2>&1 | grep -v warning | head --lines=0 ; true", "macpro51", HEAVY, "make is heavy even piped"),
    ("{ make -n; } | head", "local", "", "dry run inside braces"),
    ("bash -c 'make --version'", "local", "", "version inside bash -c"),
    ("bash scripts/ci.sh", "local", "", "a script file: unknown contents"),
    ("sh -n build.sh", "local", "", "syntax check"),
    ("terraform fmt -recursive", "local", "", "user pattern names plan and apply only"),
    ("echo terraform plan", "local", "", "pattern never matches inside arguments"),
    ("tfswitch 1.6.0 && terraform init", "local", "", "init is not plan or apply"),
    ("python train.py --help", "local", "", "prints help"),
    ("pip3 install torch", "local", "", "installs here"),
    ("nvidia-smi", "local", "", "no rule for it"),
    ("xcodebuild -version", "local", "", "prints a version"),
    ("swiftc --version", "local", "", "version"),
];

/// Sends every case to `distex json` with the local load pinned to zero.
fn route_all(sandbox: &Sandbox, config: &std::path::Path, cases: &[(&str, Value)]) -> Vec<Value> {
    let input: String = cases
        .iter()
        .map(|(cmd, assume)| json!({"op": "route", "command": cmd, "assume_load": assume}).to_string() + "\n")
        .collect();
    let run = sandbox.cmd().arg("--config").arg(config).arg("json").stdin(&input).success();
    let answers = run.json_lines();
    assert_eq!(answers.len(), cases.len(), "one answer per request:\n{}", run.stdout());
    answers
}

#[test]
fn routing_table() {
    let local_commands = CASES.iter().filter(|c| c.1 == "local").count();
    assert!(CASES.len() >= 300 && local_commands * 3 >= CASES.len(), "{} cases, {local_commands} local", CASES.len());
    let unexplained: Vec<_> = CASES.iter().filter(|c| c.1 == "local" && c.3.is_empty()).map(|c| c.0).collect();
    assert!(unexplained.is_empty(), "every case that stays local says why: {unexplained:?}");

    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let requests: Vec<(&str, Value)> = CASES.iter().map(|c| (c.0, json!({"local": 0.0}))).collect();
    let answers = route_all(&sandbox, &config, &requests);

    let mut failures = Vec::new();
    for ((command, node, rule, why), answer) in CASES.iter().zip(&answers) {
        let want_node = if *node == "local" { Value::Null } else { json!(node) };
        let want_rule = if rule.is_empty() { Value::Null } else { json!(rule) };
        let ok = answer["op"] == "route"
            && answer["node"] == want_node
            && answer["distribute"] == json!(*node != "local")
            && answer["rule"] == want_rule
            && answer["reason"] == if rule.is_empty() { json!("local") } else { json!(rule) };
        if !ok {
            failures.push(format!("{command:?} ({why}): want node={node} rule={rule:?}, got {answer}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn distributed_answers_carry_match_and_announcement() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            ("docker build -t app .", json!({"local": 0})),
            ("cargo build", json!({"local": 0})),
            ("torchrun x", json!({"local": 0})),
        ],
    );
    assert_eq!(answers[0]["matched"], "docker");
    assert_eq!(answers[0]["announcement"], "Routing Docker work to Mac Pro for Linux execution.");
    assert_eq!(answers[0]["sync"], false);
    assert_eq!(answers[1]["matched"], "cargo build");
    assert_eq!(answers[1]["announcement"], "Heavy compilation detected, offloading to Mac Pro.");
    assert_eq!(answers[1]["sync"], true);
    assert_eq!(answers[2]["announcement"], "Sending training to gpu.");
    let candidates = answers[1]["candidates"].as_array().unwrap();
    let eligible: Vec<_> =
        candidates.iter().filter(|c| c["eligible"] == true).map(|c| c["node"].as_str().unwrap()).collect();
    assert_eq!(eligible, ["macpro51", "studio"], "only builders are candidates for a build");
}

#[test]
fn least_loaded_candidate_wins_by_load_per_slot_and_speed() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            // macpro51: 24 / 12 slots / speed 2 = 1.0; studio: 4 / 8 / 1 = 0.5.
            ("make", json!({"local": 0, "macpro51": 24, "studio": 4})),
            // macpro51: 12 / 12 / 2 = 0.5; studio: 6 / 8 = 0.75.
            ("make", json!({"local": 0, "macpro51": 12, "studio": 6})),
            // Equal scores: configuration order decides.
            ("make", json!({"local": 0, "macpro51": 12, "studio": 4})),
            // Docker needs Linux only: the idle gpu box beats a busy macpro51.
            ("docker ps", json!({"local": 0, "macpro51": 24, "gpu": 0})),
        ],
    );
    let nodes: Vec<_> = answers.iter().map(|a| a["node"].as_str().unwrap_or("local").to_string()).collect();
    assert_eq!(nodes, ["studio", "macpro51", "macpro51", "gpu"]);
}

#[test]
fn overloaded_machine_sends_plain_commands_to_the_least_loaded_node() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            // 8 / 4 slots = 2.0 per core > 1.0: overloaded.
            ("ls -la", json!({"local": 8, "macpro51": 12, "studio": 0, "gpu": 4})),
            ("ls -la", json!({"local": 3})),
            // Every node busier than this machine: stay, with a warning.
            ("ls -la", json!({"local": 8, "macpro51": 100, "studio": 100, "gpu": 100})),
        ],
    );
    assert_eq!(answers[0]["node"], "studio");
    assert_eq!(answers[0]["reason"], "overloaded");
    assert_eq!(answers[0]["rule"], Value::Null);
    assert!(answers[0]["announcement"].as_str().unwrap().contains("studio"));
    assert_eq!(answers[1]["reason"], "local");
    assert_eq!(answers[1]["distribute"], false);
    assert_eq!(answers[2]["distribute"], false);
    let warnings = answers[2]["warnings"].to_string();
    assert!(warnings.contains("overloaded") && warnings.contains("no node is less loaded"), "{warnings}");
}

#[test]
fn local_machine_that_satisfies_the_rule_keeps_the_command() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(
        &CLUSTER.replace("os = \"macos\"\nslots = 4", "os = \"linux\"\nslots = 4\nroles = [\"builder\"]"),
    );
    let answers = route_all(
        &sandbox,
        &config,
        &[("docker ps", json!({"local": 0})), ("make", json!({"local": 0})), ("make", json!({"local": 40}))],
    );
    for a in &answers[..2] {
        assert_eq!(a["distribute"], false, "{a}");
        assert!(a["rule"].is_string(), "the matched rule is still reported: {a}");
    }
    assert_eq!(answers[2]["node"], "macpro51", "an overloaded builder still hands builds off: {}", answers[2]);
}

#[test]
fn unsatisfiable_rule_runs_locally_with_a_warning() {
    let sandbox = Sandbox::new();
    let config =
        sandbox.write_config("[local]\nos = \"macos\"\n[[node]]\nname = \"studio\"\nhost = \"s\"\nos = \"macos\"\n");
    let answers = route_all(&sandbox, &config, &[("docker ps", json!({"local": 0}))]);
    assert_eq!(answers[0]["distribute"], false);
    assert_eq!(answers[0]["node"], Value::Null);
    assert_eq!(answers[0]["rule"], "linux_required");
    assert!(
        answers[0]["warnings"].to_string().contains("no node satisfies rule linux_required (os=linux)"),
        "{}",
        answers[0]
    );
}

#[test]
fn nodes_that_did_not_answer_are_skipped_until_they_expire() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let state = sandbox.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = json!({"nodes": {
        "macpro51": {"answered": false, "checked_at": now - 10, "error": "connection refused"},
        "studio": {"answered": true, "checked_at": now, "load1": 2.0, "cores": 8, "load_at": now - 5},
    }});
    std::fs::write(state.join("nodes.json"), cache.to_string()).unwrap();
    let answers = route_all(&sandbox, &config, &[("make", json!({"local": 0}))]);
    assert_eq!(answers[0]["node"], "studio", "{}", answers[0]);
    let mac = &answers[0]["candidates"][0];
    assert_eq!(mac["eligible"], false);
    assert!(mac["why_not"].as_str().unwrap().contains("connection refused"));
    assert_eq!(answers[0]["candidates"][1]["load"], 2.0, "cached loads are used");

    // Ten minutes later the failure is old news: macpro51 is tried again.
    let old = json!({"nodes": {"macpro51": {"answered": false, "checked_at": now - 600, "error": "x"}}});
    std::fs::write(state.join("nodes.json"), old.to_string()).unwrap();
    let answers = route_all(&sandbox, &config, &[("make", json!({"local": 0}))]);
    assert_eq!(answers[0]["node"], "macpro51");
}

#[test]
fn unparsable_commands_stay_local_with_a_warning() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[("echo 'unterminated", json!({"local": 0})), ("docker ps )", json!({"local": 0}))],
    );
    for a in &answers {
        assert_eq!(a["distribute"], false, "{a}");
        assert!(a["warnings"].to_string().contains("could not parse"), "{a}");
    }
}

/// (command line, placement, the line the hook runs instead, why). Node
/// `macpro51` is the first builder and the only Linux node of `CLUSTER`.
const REWRITES: &[(&str, &str, &str, &str)] = &[
    (
        "git add -A && git commit -m wip && make",
        "parts",
        "git add -A && git commit -m wip && distex run --node macpro51 -- make",
        "git needs .git, which is never synced",
    ),
    (
        "echo 'int x;' > gen.h && make",
        "parts",
        "echo 'int x;' > gen.h && distex run --node macpro51 -- make",
        "gen.h is made here first, then synced",
    ),
    ("cd ../other && make", "parts", "cd ../other && distex run --node macpro51 -- make", "distex run maps the cwd"),
    ("make && git push", "parts", "distex run --node macpro51 -- make && git push", "the push happens here"),
    (
        "cargo test 2>&1 | tail -5",
        "parts",
        "distex run --node macpro51 -- 'cargo test' 2>&1 | tail -5",
        "redirection and pipe stay here",
    ),
    (
        "RUST_LOG=debug cargo test -q > test.log 2>&1; echo done",
        "parts",
        "distex run --node macpro51 -- 'RUST_LOG=debug cargo test -q' > test.log 2>&1; echo done",
        "the env prefix travels with the command, the log is written here",
    ),
    (
        "make -j8 && make test && say done",
        "parts",
        "distex run --node macpro51 -- 'make -j8 && make test' && say done",
        "consecutive routed parts of an && list run as one",
    ),
    (
        "cd src; make || echo failed",
        "parts",
        "cd src; distex run --node macpro51 -- make || echo failed",
        "|| keeps its meaning around the routed part",
    ),
    (
        "mkdir -p build && cd build && cmake .. && make -j4",
        "parts",
        "mkdir -p build && cd build && cmake .. && distex run --node macpro51 -- 'make -j4'",
        "configure here",
    ),
    (
        "git pull && docker compose up -d",
        "parts",
        "git pull && distex run --node macpro51 -- 'docker compose up -d'",
        "pull here",
    ),
    ("make", "whole_line", "distex run --node macpro51 -- make", "nothing else on the line"),
    (
        "docker build . && make",
        "whole_line",
        "distex run --node macpro51 -- 'docker build . && make'",
        "every part belongs on the node",
    ),
    (
        "cargo build --release && ./target/release/app",
        "whole_line",
        "distex run --node macpro51 -- 'cargo build --release && ./target/release/app'",
        "the executable was built there: run it there",
    ),
    (
        "export CC=clang && make",
        "whole_line",
        "distex run --node macpro51 -- 'export CC=clang && make'",
        "make needs the exported variable",
    ),
    (
        "source .venv/bin/activate && pytest -q",
        "whole_line",
        "distex run --node macpro51 -- 'source .venv/bin/activate && pytest -q'",
        "pytest needs the activated environment",
    ),
    (
        "cat input.txt | make",
        "whole_line",
        "distex run --node macpro51 -- 'cat input.txt | make'",
        "a routed part gets no stdin",
    ),
    (
        "make && ls -la build/",
        "whole_line",
        "distex run --node macpro51 -- 'make && ls -la build/'",
        "ls looks at what make built",
    ),
    (
        "cat > x.txt <<EOF\nhéllo $HOME\nEOF\nmake -j2",
        "parts",
        "cat > x.txt <<EOF\nhéllo $HOME\nEOF\ndistex run --node macpro51 -- 'make -j2'",
        "a here-document and non-ASCII text before the routed part keep their places",
    ),
    (
        "git stash && pytest -x || git stash pop",
        "parts",
        "git stash && distex run --node macpro51 -- 'pytest -x' || git stash pop",
        "git on both sides stays here",
    ),
    (
        "(cd services/api && go test ./...) 2>&1 | tail -20; git status",
        "parts",
        "distex run --node macpro51 -- '(cd services/api && go test ./...)' 2>&1 | tail -20; git status",
        "a subshell moves as one part",
    ),
    (
        "if make; then echo ok; fi && git push",
        "whole_line",
        "distex run --node macpro51 -- 'if make; then echo ok; fi && git push'",
        "an if clause cannot be cut out cleanly (the parser gives no full span): kept together",
    ),
    (
        "f() { make; }; f",
        "whole_line",
        "distex run --node macpro51 -- 'f() { make; }; f'",
        "a function definition sets up the shell",
    ),
    (
        "IDS=$(docker ps -q) && echo $IDS",
        "whole_line",
        "distex run --node macpro51 -- 'IDS=$(docker ps -q) && echo $IDS'",
        "the routed part sets a variable a later part uses",
    ),
    (
        "pip install -e '.[dev]' && pytest",
        "whole_line",
        "distex run --node macpro51 -- 'pip install -e '\\''.[dev]'\\'' && pytest'",
        "the environment pytest needs is installed on the node, not synced",
    ),
    (
        "git status; make 2>/dev/null & wait",
        "parts",
        "git status; distex run --node macpro51 -- make 2>/dev/null & wait",
        "a background routed part; wait stays here",
    ),
    ("make && make install", "here", "make && make install", "installs here what it builds"),
    (
        "cargo build --release && cp target/release/app ~/bin/",
        "here",
        "cargo build --release && cp target/release/app ~/bin/",
        "copies the build into ~/bin here",
    ),
];

#[test]
fn part_level_rewrites() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let requests: Vec<(&str, Value)> = REWRITES.iter().map(|c| (c.0, json!({"local": 0.0}))).collect();
    let answers = route_all(&sandbox, &config, &requests);
    let mut failures = Vec::new();
    for ((line, placement, command, why), answer) in REWRITES.iter().zip(&answers) {
        let plan = &answer["rewrite"];
        if plan["placement"] != *placement || plan["command"] != *command {
            failures.push(format!("{line:?} ({why}): want {placement} `{command}`, got {plan}"));
        }
        let here = *placement == "here";
        if answer["distribute"] != json!(!here) {
            failures.push(format!("{line:?}: distribute should be {}: {answer}", !here));
        }
        if here && !answer["warnings"].to_string().contains("running the whole line here") {
            failures.push(format!("{line:?}: a line kept here says why: {answer}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} rewrites wrong:\n{}", failures.len(), REWRITES.len(), failures.join("\n"));
}

#[test]
fn deeply_nested_lines_get_an_answer_and_the_rest_of_the_input_too() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let braces = format!("{}make{}", "{ ".repeat(3000), "; }".repeat(3000));
    let subst = format!("echo {}x{}", "$(".repeat(8000), ")".repeat(8000));
    let default = format!("echo {}x{}", "${a:-".repeat(8000), "}".repeat(8000));
    let answers = route_all(
        &sandbox,
        &config,
        &[
            (&braces, json!({"local": 0})),
            (&subst, json!({"local": 0})),
            (&default, json!({"local": 0})),
            ("make", json!({"local": 0})),
        ],
    );
    for a in &answers[..3] {
        assert_eq!(a["distribute"], false, "{a}");
        assert!(a["warnings"].to_string().contains("too deeply nested"), "{a}");
    }
    assert_eq!(answers[3]["node"], "macpro51", "the requests after them are still answered");

    let run =
        sandbox.cmd().arg("--config").arg(&config).args(["route", "--assume-load", "local=0", "--"]).arg(&braces).run();
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let stdout: String = run.stdout().chars().take(200).collect();
    assert!(stdout.starts_with("local"), "{stdout}");
    assert!(run.stderr().contains("too deeply nested"), "{}", run.stderr());
}

#[test]
fn assume_load_accepts_the_local_machines_configured_name() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    // 8 / 4 slots = 2.0 per core: overloaded, so plain commands move.
    let answers = route_all(&sandbox, &config, &[("ls -la", json!({"laptop": 8, "studio": 0}))]);
    assert_eq!(answers[0]["reason"], "overloaded", "{}", answers[0]);
    let run = sandbox
        .cmd()
        .arg("--config")
        .arg(&config)
        .args(["route", "--json", "--assume-load", "laptop=0", "--", "ls"])
        .run();
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let run = sandbox.cmd().arg("--config").arg(&config).args(["route", "--assume-load", "nosuch=0", "--", "ls"]).run();
    assert_ne!(run.code(), Some(0));
    assert!(run.stderr().contains("local (laptop)"), "{}", run.stderr());
}

#[test]
fn a_bad_rule_pattern_is_a_config_error_naming_file_line_and_key() {
    let sandbox = Sandbox::new();
    let text = format!("{CLUSTER}\n[[rule]]\nname = \"broken\"\npattern = '^make (all'\n");
    let config = sandbox.write_config(&text);
    let run = sandbox.cmd().arg("--config").arg(&config).args(["route", "--", "make"]).run();
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let line = text.lines().position(|l| l.starts_with("pattern = '^make")).unwrap() + 1;
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("cluster.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("rule.broken.pattern: is not a valid regular expression (unclosed group)"), "{stderr}");
}

#[test]
fn the_human_answer_shows_the_line_that_runs_instead() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let run = sandbox
        .cmd()
        .arg("--config")
        .arg(&config)
        .args(["route", "--assume-load", "local=0", "--", "git pull && make -j8"])
        .run()
        .success();
    let stdout = run.stdout();
    assert!(stdout.starts_with("macpro51 <- git pull && make -j8 (rule heavy_computation"), "{stdout}");
    assert!(stdout.contains("\n  runs as: git pull && distex run --node macpro51 -- 'make -j8'\n"), "{stdout}");
}
