#!/usr/bin/env bash
# A pinned, single-node Apache Kafka broker (KRaft, combined broker+controller,
# 127.0.0.1 only) for local use and tests. No Docker: the broker's jars are
# resolved by Maven from ./pom.xml into ./cache and run with the local Java.
#
#   kafka.sh fetch                          resolve the jars (idempotent)
#   kafka.sh start [--port N] [--dir D]     format storage, start, wait, print bootstrap address
#                  [--controller-port N]    controller listener port (default: a free port)
#                  [--owner-pid PID]        stop the broker (and delete D) once PID has exited
#                  [--restartable]          with --owner-pid: keep D when the broker stops before
#                                           PID exits (a test may start it again in D)
#                  [--scram-port N --scram-user NAME:PASSWORD]
#                                           a second listener on N that takes only SASL/SCRAM-SHA-512
#                                           logins, with that one user
#                  [--tls-port N]           a listener on N that takes only TLS connections with a
#                                           client certificate; D/tls/ gets a CA (ca.pem), a client
#                                           certificate (client.pem) and its key (client.key,
#                                           encrypted with the password in client.key.password)
#                  [--no-fetch]             fail instead of fetching when the jars are missing
#                  [--heap SIZE]            JVM heap (default 512m)
#                  [--cluster-id ID]        KRaft cluster id when D is new (22 base64url characters;
#                                           default: a fresh random one)
#   kafka.sh stop [--dir D] [--purge]       stop the broker started in D (by its pid); --purge deletes D
#   kafka.sh status [--dir D]               exit 0 and print the address when the broker in D answers
#
# Only the bootstrap address goes to stdout; everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="$here/cache"
lib="$cache/lib"
marker="$cache/complete"
default_dir="$here/run/default"

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}
say() { echo "kafka.sh: $*" >&2; }

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        return 1
    fi
}

require_java() {
    local java version major
    java=$(java_bin) || die "Java 17 or newer is required but 'java' was not found (install a JDK 17+, e.g. Debian's openjdk-17-jre-headless, or set JAVA_HOME)."
    version=$("$java" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')
    major=${version%%.*}
    [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] ||
        die "Java 17 or newer is required, found '$version' at $java (install a JDK 17+ or set JAVA_HOME)."
    echo "$java"
}

# The cache is complete when its marker names the current pom.xml's checksum.
pom_sum() { sha256sum "$here/pom.xml" | cut -d' ' -f1; }
cache_complete() { [[ -f "$marker" && "$(cat "$marker")" == "$(pom_sum)" ]] && compgen -G "$lib/kafka_2.13-*.jar" >/dev/null; }

cmd_fetch() {
    if cache_complete; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 ||
        die "Maven is required to fetch the Kafka broker's jars but 'mvn' was not found (install Debian's maven package)."
    require_java >/dev/null
    say "fetching the Kafka broker's jars with Maven into $cache ..."
    local staging="$cache/lib.tmp.$$"
    rm -rf "$staging"
    mkdir -p "$cache"
    if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$staging" >"$cache/fetch.log" 2>&1; then
        rm -rf "$staging"
        tail -n 20 "$cache/fetch.log" >&2
        die "mvn could not resolve the Kafka broker's jars (full log: $cache/fetch.log)."
    fi
    rm -rf "$lib"
    mv "$staging" "$lib"
    pom_sum >"$marker"
    say "fetched $(ls "$lib" | wc -l) jars."
}

# A free port below the kernel's ephemeral range, so that no outgoing
# connection can take it before the broker binds it.
free_port() {
    local port low=32768
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((low > 16000)) || low=32768
    for _ in $(seq 1 50); do
        port=$((15000 + RANDOM % (low - 15000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "could not find a free port."
}

# Sends a Metadata v4 request (all topics) and prints the number of brokers in
# the answer; fails when nothing answers. Kafka 4 no longer serves v0-v3.
metadata_brokers() {
    local port=$1 bytes
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    # size=23 | api_key=3 | api_version=4 | correlation_id=1 | client_id="kafka.sh" | topics=null | allow_auto_topic_creation=false
    printf '\x00\x00\x00\x17\x00\x03\x00\x04\x00\x00\x00\x01\x00\x08kafka.sh\xff\xff\xff\xff\x00' >&3
    # size(4) correlation_id(4) throttle_time_ms(4) brokers.count(4)
    bytes=$(timeout 5 head -c 16 <&3 | od -An -v -tu1 | tr -s ' \n' ' ')
    exec 3>&- 3<&-
    read -r -a b <<<"$bytes"
    [[ ${#b[@]} -eq 16 && ${b[7]} -eq 1 ]] || return 1
    echo $(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]))
}

# A random cluster id as Kafka's own `random-uuid` makes one: 16 random bytes
# in unpadded base64url, never beginning with '-' (one draw in 64 would).
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        [[ $id == -* ]] || break
    done
    echo "$id"
}

# Makes, in DIR, a CA and two certificates it signs: the broker's (for
# 127.0.0.1 and localhost) and a client's (CN=client). Both private keys are
# PKCS#8, encrypted with a random password kept next to them, as Kafka's PEM
# key stores require and as clients are usually given theirs.
make_certificates() {
    local dir=$1 status
    mkdir -p "$dir"
    # The subshell stops at the first failing command only outside an
    # `||` list, hence the status read by hand.
    set +e
    (
        set -e
        cd "$dir"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 3650 -subj "/CN=kafka.sh test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        for name in broker client; do
            password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
            echo "$password" >"$name.key.password"
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$name.plain.key" -out "$name.csr" -subj "/CN=$name"
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                -days 3650 -extfile "$name.ext" -out "$name.pem"
            # Java reads only PKCS#5 v1 encrypted keys (no PBES2), hence
            # 3DES for the broker's; the client's is AES, as usual today.
            if [[ $name == broker ]]; then scheme=(-v1 PBE-SHA1-3DES); else scheme=(-v2 aes-256-cbc); fi
            openssl pkcs8 -topk8 "${scheme[@]}" -in "$name.plain.key" -out "$name.key" \
                -passout "pass:$password"
            rm -f "$name.plain.key" "$name.csr" "$name.ext"
        done
        cat broker.key broker.pem ca.pem >broker-keystore.pem
    ) >"$dir/openssl.log" 2>&1
    status=$?
    set -e
    if [[ $status -ne 0 ]]; then
        cat "$dir/openssl.log" >&2
        rm -f "$dir/broker-keystore.pem"
        die "making TLS certificates in $dir failed."
    fi
}

broker_pid() {
    # Prints the pid recorded in DIR when that process is alive and is the
    # broker started with DIR's config (guards against a reused pid).
    local dir=$1 pid
    [[ -f "$dir/broker.pid" ]] || return 1
    pid=$(cat "$dir/broker.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/server.properties" || return 1
    echo "$pid"
}

cmd_start() {
    local port=9092 dir=$default_dir cport="" owner="" fetch=1 heap=512m restartable=0 sport="" suser="" tport="" cluster_id=""
    while [[ $# -gt 0 ]]; do
        case $1 in
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        --controller-port) cport=${2:?--controller-port needs a value}; shift 2 ;;
        --owner-pid) owner=${2:?--owner-pid needs a value}; shift 2 ;;
        --restartable) restartable=1; shift ;;
        --scram-port) sport=${2:?--scram-port needs a value}; shift 2 ;;
        --scram-user) suser=${2:?--scram-user needs a value}; shift 2 ;;
        --tls-port) tport=${2:?--tls-port needs a value}; shift 2 ;;
        --heap) heap=${2:?--heap needs a value}; shift 2 ;;
        --cluster-id) cluster_id=${2:?--cluster-id needs a value}; shift 2 ;;
        --no-fetch) fetch=0; shift ;;
        *) die "start: unknown argument '$1' (see the usage at the top of $0)." ;;
        esac
    done
    [[ "$port" =~ ^[0-9]+$ && "$port" -ge 1 && "$port" -le 65535 ]] || die "start: --port must be a TCP port, got '$port'."
    [[ -z "$cluster_id" || "$cluster_id" =~ ^[A-Za-z0-9_-]{21}[AQgw]$ ]] ||
        die "start: --cluster-id must be 16 bytes in unpadded base64url (22 characters), got '$cluster_id'."
    local java
    java=$(require_java)
    if ! cache_complete; then
        [[ $fetch -eq 1 ]] || die "the Kafka broker's jars are not fetched: run deploy/kafka/kafka.sh fetch (or the README's test command)."
        cmd_fetch
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if pid=$(broker_pid "$dir"); then
        die "a broker started in $dir is already running (pid $pid); stop it first."
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is already in use."
    fi
    if [[ -n "$sport" || -n "$suser" ]]; then
        [[ "$sport" =~ ^[0-9]+$ && -n "$suser" && "$suser" == *:* ]] ||
            die "start: --scram-port N and --scram-user NAME:PASSWORD go together."
        if (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null; then
            die "port $sport on 127.0.0.1 is already in use."
        fi
    fi
    if [[ -n "$tport" ]]; then
        [[ "$tport" =~ ^[0-9]+$ && "$tport" -ge 1 && "$tport" -le 65535 ]] || die "start: --tls-port must be a TCP port, got '$tport'."
        command -v openssl >/dev/null 2>&1 || die "--tls-port needs openssl to make certificates (install Debian's openssl package)."
        if (exec 3<>"/dev/tcp/127.0.0.1/$tport") 2>/dev/null; then
            die "port $tport on 127.0.0.1 is already in use."
        fi
    fi
    [[ -n "$cport" ]] || cport=$(free_port)
    if (exec 3<>"/dev/tcp/127.0.0.1/$cport") 2>/dev/null; then
        die "controller port $cport on 127.0.0.1 is already in use."
    fi

    # The plain listener comes first and is always there: the broker talks
    # to itself over it and readiness is checked on it.
    local advertised="PLAINTEXT://127.0.0.1:$port" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [[ -n "$sport" ]]; then
        advertised+=",SASL_PLAINTEXT://127.0.0.1:$sport"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    fi
    if [[ -n "$tport" ]]; then
        advertised+=",SSL://127.0.0.1:$tport"
        protocols+=",SSL:SSL"
    fi
    cat >"$dir/server.properties" <<EOF
# Single-node KRaft broker for local use and tests (written by kafka.sh).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$advertised,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One member joining an empty group need not wait for others.
group.initial.rebalance.delay.ms=0
# Tests kill consumers on purpose: let short sessions find them fast.
group.min.session.timeout.ms=1000
EOF
    local scram_args=()
    if [[ -n "$sport" ]]; then
        cat >>"$dir/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
        scram_args=(--add-scram "SCRAM-SHA-512=[name=${suser%%:*},password=${suser#*:}]")
    fi
    if [[ -n "$tport" ]]; then
        # Certificates are made once; a restart on the same directory keeps them.
        # (Not in an `||` list: that would switch off `set -e` inside it.)
        if [[ ! -f "$dir/tls/broker-keystore.pem" ]]; then
            make_certificates "$dir/tls"
        fi
        cat >>"$dir/server.properties" <<EOF
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$dir/tls/broker-keystore.pem
listener.name.ssl.ssl.key.password=$(cat "$dir/tls/broker.key.password")
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.ssl.ssl.client.auth=required
EOF
    fi
    cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
EOF

    # Format once; a restart on the same directory keeps its data.
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        [[ -n "$cluster_id" ]] || cluster_id=$(new_cluster_id)
        # `--cluster-id=ID`, one word: an id may begin with '-', which the
        # tool's parser would otherwise take for an option.
        "$java" -Xmx256m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*" \
            kafka.tools.StorageTool format --cluster-id="$cluster_id" --config "$dir/server.properties" \
            "${scram_args[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "formatting KRaft storage in $dir/data failed."; }
    fi

    # setsid: the broker outlives this script and ignores the caller's Ctrl-C;
    # it is stopped by pid through `kafka.sh stop`.
    setsid "$java" -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$lib/*" kafka.Kafka "$dir/server.properties" \
        >"$dir/broker.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$dir/broker.pid"

    local deadline=$((SECONDS + 90)) brokers
    until brokers=$(metadata_brokers "$port" 2>/dev/null) && [[ "$brokers" -ge 1 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$dir/broker.log" >&2
            rm -f "$dir/broker.pid"
            if grep -q "Address already in use" "$dir/broker.log"; then
                die "a port of the broker (listener $port or controller $cport) is already in use."
            fi
            die "the broker exited during start-up (log: $dir/broker.log)."
        fi
        if ((SECONDS > deadline)); then
            tail -n 30 "$dir/broker.log" >&2
            cmd_stop --dir "$dir"
            die "the broker did not answer a metadata request within 90 s (log: $dir/broker.log)."
        fi
        sleep 0.2
    done

    if [[ -n "$owner" ]]; then
        # A watchdog that stops the broker (and deletes its directory) once the
        # owning process is gone, however it ended. Detached from our stdio so a
        # caller reading our output sees it close.
        # A restartable broker's watchdog outlives a stop of the broker, so
        # the directory stays for the next start.
        setsid bash -c '
            while kill -0 "$1" 2>/dev/null && { [[ $5 -eq 1 ]] || kill -0 "$2" 2>/dev/null; }; do sleep 1; done
            exec "$3" stop --dir "$4" --purge
        ' watchdog "$owner" "$pid" "$0" "$dir" "$restartable" >/dev/null 2>&1 </dev/null &
    fi
    say "broker pid $pid is up on 127.0.0.1:$port (dir $dir)."
    echo "127.0.0.1:$port"
}

cmd_stop() {
    local dir=$default_dir purge=0
    while [[ $# -gt 0 ]]; do
        case $1 in
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        --purge) purge=1; shift ;;
        *) die "stop: unknown argument '$1'." ;;
        esac
    done
    [[ -d "$dir" ]] || { say "nothing to stop: $dir does not exist."; return 0; }
    dir=$(cd "$dir" && pwd)
    local pid
    if pid=$(broker_pid "$dir"); then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "broker pid $pid did not stop within 30 s; killing it."
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        say "stopped broker pid $pid."
    fi
    rm -f "$dir/broker.pid"
    if [[ $purge -eq 1 ]]; then
        rm -rf "$dir"
    fi
}

cmd_status() {
    local dir=$default_dir
    while [[ $# -gt 0 ]]; do
        case $1 in
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        *) die "status: unknown argument '$1'." ;;
        esac
    done
    [[ -f "$dir/server.properties" ]] || die "no broker was started in $dir."
    broker_pid "$dir" >/dev/null || die "the broker in $dir is not running."
    local port
    port=$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$dir/server.properties")
    metadata_brokers "$port" >/dev/null 2>&1 || die "the broker in $dir does not answer on port $port."
    echo "127.0.0.1:$port"
}

case ${1:-} in
fetch) shift; cmd_fetch "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
