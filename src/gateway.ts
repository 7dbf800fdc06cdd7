/**
 * The gateway: builds the core from the configuration, starts every enabled listener, and shuts
 * down gracefully (stop accepting, tell devices, drain the pipeline).
 *
 * @module
 */

import { basename, dirname } from "./core/path.ts";
import {
  anonymousAllowed,
  deviceFilePath,
  type FerryConfig,
  isLoopback,
  loadConfigFile,
  resolveConfig,
} from "./config/config.ts";
import {
  type AccountEntry,
  addAccount,
  addDevice,
  type DeviceEntry,
  readDeviceFile,
  removeAccount,
  removeDevice,
} from "./config/device_file.ts";
import type { AccountFileAdmin, AccountView } from "./http/admin/accounts_api.ts";
import { type Clock, systemClock } from "./core/clock.ts";
import { Core } from "./core/core.ts";
import { Logger } from "./core/logger.ts";
import type { Message } from "./core/message.ts";
import { monitorEventLoop } from "./core/event_loop_monitor.ts";
import type { HttpServer } from "./http/server.ts";
import { BinaryServer } from "./protocols/binary/server.ts";
import { CoapServer } from "./protocols/coap/server.ts";
import { MqttServer } from "./protocols/mqtt/server.ts";
import type { ConsoleAuth } from "./http/console/auth.ts";
import { WebSocketListenError } from "./protocols/mqtt/ws_listener.ts";
import type { DeviceFileAdmin } from "./http/admin/admin_api.ts";
import type { Dashboard } from "./http/dashboard/dashboard.ts";
import type { DeviceApi } from "./http/device_api/mod.ts";
// Imported when a bridge is configured: its MQTT client brings npm:mqtt-packet.
import type { Northbound, NorthboundConfig } from "./northbound/mod.ts";
import type { ListenAddress, Listener } from "./protocols/listener.ts";
import { SessionPersistence } from "./protocols/mqtt/session_persistence.ts";
import { RetainedTable } from "./persistence/retained_table.ts";
import { StateDb } from "./persistence/state_db.ts";
import { MetricsHistory, registerProcessMetrics, SysTopics } from "./ops/mod.ts";
// The rule engine and the HTTP parts are imported when started, after the device listeners when
// they can be (docs/operations.md, "Start-up").
import type { AttachedRules } from "./rules/attach.ts";
import type { DeadLetterSink } from "./rules/dead_letter.ts";
import type { RuleEngine } from "./rules/engine.ts";

/** Options of {@link Gateway}. */
export interface GatewayOptions {
  /** Root logger. @default a logger per `config.log` writing to stderr */
  log?: Logger;
  /** Time source. @default systemClock */
  clock?: Clock;
  /** CoAP resource set: Ferry's device resources or the ETSI plugtest set. @default "ferry" */
  coapMode?: "ferry" | "plugtest";
  /** The config file: rule module paths are relative to it, and its `rules` are hot reloaded. */
  configFile?: string;
  /**
   * Where messages rules failed on go when their `onError` is `dead-letter`. @default the
   * northbound spool's dead-letter table (bridge `rule:{name}`); without a northbound, logged
   * (rate limited) and counted, not kept
   */
  deadLetters?: DeadLetterSink;
}

/** Fills each bridge's empty `gatewayId` with the host name. */
function withGatewayId(config: NorthboundConfig): NorthboundConfig {
  const host = () => Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64);
  const fill = (b: NorthboundConfig & { gatewayId?: string }) => ({
    ...b,
    gatewayId: b.gatewayId || host(),
  });
  return Array.isArray(config) ? config.map(fill) : fill(config);
}

/** Names of the listeners, in start order (`mqttWs`: MQTT over WebSocket, started by `mqtt`). */
export type ListenerName = "binary" | "mqtt" | "mqttWs" | "coap" | "http";

type Factory = (
  core: Core,
  config: FerryConfig,
  options: GatewayOptions & { sessions?: SessionPersistence },
) => Listener | undefined;

/** How each listener is built from the config; `undefined` means not built yet. */
const FACTORIES: Record<Exclude<ListenerName, "http" | "mqttWs">, Factory> = {
  binary: (core, c) => new BinaryServer(core, { ...c.binary, hostname: c.host }),
  mqtt: (core, c, options) => {
    const { enabled: _, persistence: _p, websocket, ...o } = c.mqtt;
    const { enabled: ws, httpListener: _h, ...wso } = websocket;
    return new MqttServer(core, {
      ...o,
      hostname: c.host,
      persistence: options.sessions,
      websocket: ws ? { ...wso, hostname: c.host } : undefined,
    });
  },
  coap: (core, c, options) => {
    // The old command-queue keys configure the core's store (resolveConfig), not the server.
    const { enabled: _, maxPendingCommands: _m, commandTtlMs: _t, maxCommandDevices: _d, ...o } =
      c.coap;
    return new CoapServer(core, { ...o, hostname: c.host, mode: options.coapMode ?? "ferry" });
  },
};

/**
 * Binds a listener; a failure names the listener and the address, as in
 * `mqtt: cannot listen on 127.0.0.1:1883: address already in use`.
 */
async function listenOrExplain(
  name: ListenerName,
  host: string,
  port: number,
  listen: () => Promise<ListenAddress>,
): Promise<ListenAddress> {
  try {
    return await listen();
  } catch (e) {
    let err = e;
    if (err instanceof WebSocketListenError) { // MQTT's second listener
      name = "mqttWs";
      port = err.port;
      err = err.cause;
    }
    const why = err instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : err instanceof Deno.errors.AddrNotAvailable
      ? "address not available on this machine"
      : err instanceof Deno.errors.PermissionDenied
      ? "permission denied (ports below 1024 need privileges)"
      : (err as Error).message.replace(/ \(os error \d+\)$/, "");
    const where = host.includes(":") && !host.startsWith("[")
      ? `[${host}]:${port}`
      : `${host}:${port}`;
    throw new Error(`${name}: cannot listen on ${where}: ${why}`, { cause: err });
  }
}

/**
 * A running Ferry gateway.
 *
 * @example
 * ```ts
 * import { resolveConfig } from "./config/config.ts";
 * import { silentLogger } from "./core/logger.ts";
 * import { Gateway } from "./gateway.ts";
 * const config = resolveConfig({
 *   binary: { port: 0 }, mqtt: { enabled: false }, coap: { enabled: false }, http: { port: 0 },
 * });
 * const gw = new Gateway(config, { log: silentLogger });
 * const addrs = await gw.start();
 * if (!addrs.binary?.port) throw new Error();
 * await gw.stop();
 * ```
 */
export class Gateway implements AsyncDisposable {
  /** The core. */
  readonly core: Core;
  /** The validated configuration. */
  readonly config: FerryConfig;
  #log: Logger;
  #options: GatewayOptions;
  #listeners: Listener[] = [];
  #http: HttpServer | undefined;
  #mqtt: MqttServer | undefined;
  #dashboard: Dashboard | undefined;
  #deviceApi: DeviceApi | undefined;
  #northbound: Northbound | undefined;
  #rules: AttachedRules | undefined;
  #state: StateDb | undefined;
  #sessions: SessionPersistence | undefined;
  #addresses: Partial<Record<ListenerName, ListenAddress>> = {};
  #stopping: Promise<void> | undefined;
  #ready = false;
  #fileDevices: DeviceEntry[] = [];
  #auth: ConsoleAuth | undefined;
  #registryLoaded = false;
  #watcher: Deno.FsWatcher | undefined;
  #stopMonitor: (() => void) | undefined;
  #watching: Promise<void> | undefined;
  #sys: SysTopics | undefined;
  /** The dashboard charts' short history (with the HTTP listener). */
  #history: MetricsHistory | undefined;

  /** Builds the core; call {@link start}. */
  constructor(config: FerryConfig, options: GatewayOptions = {}) {
    this.config = config;
    this.#options = options;
    this.#log = options.log ?? new Logger({ level: config.log.level, format: config.log.format });
    this.core = new Core({
      clock: options.clock ?? systemClock,
      log: this.#log,
      queueCapacity: config.pipeline.queueCapacity,
      concurrency: config.pipeline.concurrency,
      devices: config.auth.devices,
      services: config.auth.services,
      anonymous: anonymousAllowed(config),
      deviceAcl: config.auth.deviceAcl,
      admission: {
        maxConnectionsPerAddress: config.limits.maxConnectionsPerAddress,
        exemptLoopback: config.limits.exemptLoopback,
        reservedDescriptors: config.limits.reservedDescriptors,
      },
      authFailuresPerMinute: config.limits.authFailuresPerMinute,
      deviceRatePerSec: config.limits.deviceRatePerSec,
      deviceBurst: config.limits.deviceBurst || undefined,
      subscriberHoldMs: config.limits.subscriberHoldMs,
      payloadBudgetBytes: config.limits.payloadBudgetBytes,
      publishWindow: config.limits.publishWindow,
      commands: config.commands,
    });
  }

  /** Bound addresses by listener. */
  get addresses(): Partial<Record<ListenerName, ListenAddress>> {
    return this.#addresses;
  }

  /**
   * Re-reads the device registry file and applies it live: new devices can connect, removed or
   * rotated ones are disconnected, anonymous access follows (`auto`: off once any device exists).
   * A broken file is reported and the previous registry stays in force.
   */
  async reloadDevices(): Promise<boolean> {
    const log = this.#log.child("gateway");
    const path = deviceFilePath(this.config);
    let fileServices: AccountEntry[] = [];
    try {
      const file = await readDeviceFile(path);
      this.#fileDevices = file.devices;
      fileServices = file.services ?? [];
    } catch (err) {
      log.error("device file not reloaded; keeping the previous registry", { error: err });
      return false;
    }
    const fromConfig = new Set(this.config.auth.devices.map((d) => d.id));
    const devices = [
      ...this.config.auth.devices,
      ...this.#fileDevices.filter((d) => !fromConfig.has(d.id)).map((d) => ({
        id: d.id,
        tokenHash: d.tokenHash,
      })),
    ];
    const reg = this.core.registry;
    const anonymous = anonymousAllowed(this.config, this.#fileDevices.length);
    // Service accounts: the config's, and the file's (`ferry account add`, the management API);
    // a name in the config wins.
    const configServices = new Set(this.config.auth.services.map((a) => a.name));
    const services = [
      ...this.config.auth.services,
      ...fileServices.filter((a) => !configServices.has(a.name)).map((a) => ({
        name: a.name,
        tokenHash: a.tokenHash,
        publish: a.publish,
        subscribe: a.subscribe,
      })),
    ];
    reg.setCredentials(devices, services);
    log.info("device registry loaded", {
      path,
      devices: devices.length,
      services: services.length,
      anonymous,
    });
    if (reg.anonymous !== anonymous) {
      const running = this.#registryLoaded; // not the load at start-up
      reg.setAnonymous(anonymous);
      // `auto` follows the registry: say so when it flips on a running gateway.
      if (running && !anonymous) {
        log.warn(
          'anonymous access is now off: a device is registered (auth.anonymous "auto"); every device needs its id and token',
          { devices: devices.length },
        );
      } else if (running) {
        log.warn(
          'anonymous access is on again: no device is registered (auth.anonymous "auto" on loopback); set auth.anonymous to false to keep unregistered devices out',
        );
      }
    }
    this.#registryLoaded = true;
    return true;
  }

  #watch(): void {
    const path = deviceFilePath(this.config);
    const dir = dirname(path);
    const name = basename(path);
    try {
      Deno.mkdirSync(dir, { recursive: true });
      this.#watcher = Deno.watchFs(dir, { recursive: false });
    } catch (err) {
      this.#log.child("gateway").warn("cannot watch the device file; reload with SIGHUP", {
        error: err,
      });
      return;
    }
    const watcher = this.#watcher;
    const suffix = `/${name}`;
    // Every write in the directory is an event here (the state database's too): each costs as
    // little as possible.
    const names = (ev: Deno.FsEvent) => {
      for (const p of ev.paths) if (p.endsWith(suffix)) return true;
      return false;
    };
    this.#watching = (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      for await (const ev of watcher) {
        if (!names(ev)) continue;
        clearTimeout(timer); // debounce editors and atomic renames
        timer = setTimeout(() => this.reloadDevices(), 100);
      }
      clearTimeout(timer);
    })();
  }

  /** Starts every enabled listener; resolves with their addresses. */
  async start(): Promise<Partial<Record<ListenerName, ListenAddress>>> {
    const c = this.config;
    const log = this.#log.child("gateway");
    if (!await this.reloadDevices()) {
      throw new Error(`device file ${deviceFilePath(c)} is unusable (see the log)`);
    }
    this.#watch();
    this.#stopMonitor = monitorEventLoop(this.core.metrics);
    registerProcessMetrics(this.core.metrics);
    const anonymous = this.core.registry.anonymous;
    log.info("starting", {
      host: c.host,
      anonymous,
      devices: this.core.registry.credentialCount,
      services: c.auth.services.length,
    });
    if (!isLoopback(c.host) && !anonymous && this.core.registry.credentialCount === 0) {
      log.warn(
        "listening beyond loopback with no device credentials and anonymous access off: every device will be refused (configure auth.devices or set auth.anonymous to true)",
      );
    }
    try {
      if (c.northbound) {
        // Before any listener: every message a device gets acknowledged must go through the spool.
        const { startNorthbound } = await import("./northbound/mod.ts");
        this.#northbound = await startNorthbound(
          this.core,
          withGatewayId(c.northbound),
          c.dataDir,
        );
        log.info("northbound bridge started", {
          bridges: this.#northbound.bridges.map((b) => b.name),
        });
      }
      // Before any listener when there are rules: they see every device's first message.
      if (c.rules.length) await this.#attachRules();
      if (c.mqtt.enabled && c.mqtt.persistence.enabled) this.#openState();
      for (const name of ["binary", "mqtt", "coap"] as const) {
        if (!c[name].enabled) {
          log.info(`${name} listener disabled by config`);
          continue;
        }
        const l = FACTORIES[name](this.core, c, { ...this.#options, sessions: this.#sessions });
        if (!l) {
          log.warn(
            `${name} listener is not built yet: --${name}-port ${
              c[name].port
            } accepted and ignored`,
          );
          continue;
        }
        this.#addresses[name] = await listenOrExplain(name, c.host, c[name].port, () => l.listen());
        this.#listeners.push(l);
        log.info(`${name} listening`, {
          ...this.#addresses[name],
          ...(name === "coap"
            ? { mode: this.#options.coapMode ?? "ferry" }
            : { tls: !!c[name].tls }),
        });
        if (l instanceof MqttServer) this.#mqtt = l;
        if (l instanceof MqttServer && l.webSocketAddress) {
          this.#addresses.mqttWs = l.webSocketAddress;
          log.info("mqttWs listening", {
            ...l.webSocketAddress,
            tls: !!c.mqtt.websocket.tls,
            path: c.mqtt.websocket.path,
          });
          if (c.mqtt.tls && !c.mqtt.websocket.tls && !isLoopback(c.host)) {
            log.warn(
              "MQTT over TCP is TLS-only but MQTT over WebSocket is plain ws:// beyond loopback: set mqtt.websocket.tls (or mqtt.websocket.enabled false)",
            );
          }
        }
      }
      // With a config file and no rule yet, an engine still watches it (rules added to it later
      // start without a restart); it has no subscription, so it can start after the listeners.
      if (!c.rules.length && this.#options.configFile) await this.#attachRules();
      if (c.http.enabled) {
        const { AdminApi, ConsoleAuth, Dashboard, DeviceApi, HttpServer, mayReadSys, mqttWsRoute } =
          await import("./http/parts.ts");
        this.#http = new HttpServer(this.core, {
          hostname: c.host,
          port: c.http.port,
          tls: c.http.tls,
          ready: () => this.#ready,
          maxConnections: c.http.maxConnections,
          headersTimeoutMs: c.http.headersTimeoutMs,
          idleTimeoutMs: c.http.idleTimeoutMs,
          shutdownGraceMs: c.http.shutdownGraceMs,
          allowedHosts: c.http.allowedHosts,
          publicMetrics: c.http.publicMetrics,
        });
        const auth = new ConsoleAuth(this.core.registry, {
          trustedProxies: c.http.trustedProxies,
          secure: c.http.tls !== undefined,
          now: () => this.core.clock.now(),
        });
        const http = this.#http;
        // /metrics and the API documents: public, or for accounts whose ACL allows $SYS/#.
        http.guardMetrics((req, info) => {
          const caller = auth.identify(req, info.remoteAddr.hostname);
          if (!caller) {
            return new Response("Cannot serve metrics: credentials required\n", {
              status: 401,
              headers: { "www-authenticate": 'Basic realm="ferry"', "cache-control": "no-store" },
            });
          }
          return mayReadSys(caller) ? true : new Response(
            `Cannot serve metrics: account "${caller.name}" may not read $SYS/#\n`,
            { status: 403, headers: { "cache-control": "no-store" } },
          );
        });
        http.route((req, url, info) =>
          url.pathname === "/api/v1/openapi.json" ? http.guard(req, info) : undefined
        );
        // The management API and the OpenAPI document (the device API's routes and its own),
        // before the device API: both live under /api/v1/.
        this.#history = new MetricsHistory(this.core.metrics, {
          intervalMs: c.sys.historyIntervalMs,
          samples: c.sys.historySamples,
        });
        this.#history.start();
        const admin = new AdminApi(this.core, auth, {
          devices: this.#deviceFileAdmin(),
          accounts: this.#accountFileAdmin(),
          northbound: () => this.#northbound,
          history: () => this.#history?.snapshot(),
          rules: () => this.#rules?.engine,
          baseDocument: c.http.deviceApi.enabled
            ? () => this.#deviceApi!.openApiDocument()
            : undefined,
        });
        http.route((req, url, info) => admin.handle(req, url, info));
        if (c.http.deviceApi.enabled) {
          const {
            enabled: _,
            maxPendingCommands: _m,
            commandTtlMs: _t,
            maxCommandDevices: _d,
            ...o
          } = c.http.deviceApi;
          const api = this.#deviceApi = new DeviceApi(this.core, o);
          http.route((req, url, info) => api.handle(req, url, info));
        }
        const ws = c.mqtt.websocket;
        if (this.#mqtt && ws.httpListener) {
          // MQTT over WebSocket on the HTTP port too, through the route hook (Deno's WebSocket).
          const wsRoute = mqttWsRoute(this.#mqtt, {
            path: ws.path,
            allowedOrigins: ws.allowedOrigins,
            maxQueuedBytes: c.mqtt.maxPendingBytes,
          });
          // The listener hands every route the runtime's handler info (it only reads remoteAddr).
          http.route((req, url, info) => wsRoute(req, url, info as Deno.ServeHandlerInfo), {
            upgrades: true,
          });
        }
        const dashboard = this.#dashboard = new Dashboard(this.core, auth);
        http.route((req, url, info) => dashboard.handle(req, url, info));
        if (c.http.loginLink) dashboard.onLoginLink((token) => this.#writeLoginLink(token));
        this.#auth = auth;
        this.#addresses.http = await listenOrExplain(
          "http",
          c.host,
          c.http.port,
          () => http.listen(),
        );
        log.info("http listening", { ...this.#addresses.http, tls: !!c.http.tls });
        if (c.http.loginLink) this.#printLoginLink(auth.linkToken);
      }
    } catch (err) {
      log.error("start-up failed", { error: err });
      await this.stop();
      throw err;
    }
    if (c.sys.intervalSec > 0) {
      this.#sys = new SysTopics(this.core, c.sys);
      this.#sys.start();
    }
    this.#ready = true;
    log.info("ready", { addresses: this.#addresses, sysIntervalSec: c.sys.intervalSec });
    return this.#addresses;
  }

  /** The dashboard's one-time login link for `token` (on the bound address). */
  #loginUrl(token: string): string {
    const a = this.#addresses.http!;
    const wild = a.hostname === "0.0.0.0" || a.hostname === "::";
    const host = wild ? "localhost" : a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
    const scheme = this.config.http.tls ? "https" : "http";
    return `${scheme}://${host}:${a.port}/dashboard/login?once=${token}`;
  }

  /**
   * The registry file as the management API changes it: the same file and functions as
   * `ferry device add|rotate|remove`, then the same live reload as a change on disk.
   */
  #deviceFileAdmin(): DeviceFileAdmin {
    const path = () => deviceFilePath(this.config);
    const reload = async () => {
      if (!await this.reloadDevices()) throw new Error("the registry file was not reloaded");
    };
    return {
      add: async (id) => {
        const token = await addDevice(path(), id);
        await reload();
        return token;
      },
      rotate: async (id) => {
        const token = await addDevice(path(), id, { rotate: true });
        await reload();
        return token;
      },
      remove: async (id) => {
        await removeDevice(path(), id);
        await reload();
      },
      has: async (id) => (await readDeviceFile(path())).devices.some((d) => d.id === id),
    };
  }

  /**
   * The service accounts of the registry file as the management API changes them: the same file
   * and functions as `ferry account add|remove`, then the same live reload as a change on disk.
   * Accounts of the config (`auth.services`) are listed, not changed.
   */
  #accountFileAdmin(): AccountFileAdmin {
    const path = () => deviceFilePath(this.config);
    const inConfig = (name: string) => this.config.auth.services.some((a) => a.name === name);
    const reload = async () => {
      if (!await this.reloadDevices()) throw new Error("the registry file was not reloaded");
    };
    return {
      list: async () => {
        const out: AccountView[] = this.config.auth.services.map((a) => ({
          name: a.name,
          publish: [...a.publish],
          subscribe: [...a.subscribe],
          source: "config",
          updated: null,
        }));
        for (const a of (await readDeviceFile(path())).services ?? []) {
          if (inConfig(a.name)) continue;
          out.push({
            name: a.name,
            publish: a.publish,
            subscribe: a.subscribe,
            source: "file",
            updated: a.updated,
          });
        }
        return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      },
      add: async (name, acl) => {
        const token = await addAccount(path(), name, acl, { reserved: inConfig });
        await reload();
        return token;
      },
      remove: async (name) => {
        await removeAccount(path(), name);
        await reload();
      },
    };
  }

  /** Path of the file that holds a fresh one-time login link. */
  get loginLinkFile(): string {
    return `${this.config.dataDir.replace(/\/+$/, "")}/dashboard-login-link`;
  }

  /**
   * Prints the one-time login link on stdout (never in the log: it is a secret) and keeps it in
   * `dataDir/dashboard-login-link` (mode 0600), rewritten with a fresh link after each use.
   */
  #printLoginLink(token: string): void {
    const url = this.#loginUrl(token);
    console.log(`ferry: open the dashboard with this one-time link: ${url}`);
    this.#writeLoginLink(token);
  }

  #writeLoginLink(token: string): void {
    const log = this.#log.child("dashboard");
    const path = this.loginLinkFile;
    try {
      Deno.mkdirSync(this.config.dataDir, { recursive: true });
      const tmp = `${path}.tmp`;
      Deno.writeTextFileSync(tmp, `${this.#loginUrl(token)}\n`, { mode: 0o600 });
      Deno.chmodSync(tmp, 0o600);
      Deno.renameSync(tmp, path);
      log.info("dashboard one-time login link written", { file: path });
    } catch (err) {
      log.warn("cannot write the dashboard login link file", { file: path, error: err });
    }
  }

  /** The northbound bridges, when configured (dead letters, link states). */
  get northbound(): Northbound | undefined {
    return this.#northbound;
  }

  /**
   * Applies a new `northbound` section live (SIGHUP): bridges added, removed or changed without a
   * restart and without losing spooled messages. Adding the first bridge or removing the last
   * needs a restart (the spool and the accept hook are set up before the listeners). Returns
   * false (logged) when the section is unusable; the running bridges stay.
   */
  async reloadNorthbound(config: NorthboundConfig | undefined): Promise<boolean> {
    const log = this.#log.child("gateway");
    if (!this.#northbound || !config || (Array.isArray(config) && config.length === 0)) {
      if (this.#northbound || config) {
        log.warn("adding the first bridge or removing the last needs a restart");
      }
      return false;
    }
    try {
      await this.#northbound.reload(withGatewayId(config));
      return true;
    } catch (err) {
      log.error("northbound not reloaded; the running bridges stay", { error: err });
      return false;
    }
  }

  /**
   * Opens the state file (persistent MQTT sessions, retained messages) and loads the retained
   * messages, before any listener accepts; the MQTT listener restores the sessions. A corrupt or
   * unreadable file is set aside (logged as an error) and the gateway starts with an empty one.
   */
  #openState(): void {
    const c = this.config;
    const log = this.#log.child("state");
    const file = c.mqtt.persistence.file;
    Deno.mkdirSync(c.dataDir, { recursive: true });
    const path = file.startsWith("/") ? file : `${c.dataDir.replace(/\/+$/, "")}/${file}`;
    // A corrupt file is set aside (and its new name logged); a full or failing disk throws and
    // the gateway refuses to start, naming the file: a healthy file is never moved for that.
    const db = this.#state = StateDb.openOrSetAside(path, {
      synchronous: c.mqtt.persistence.synchronous,
      onWriteError: (error) => log.error("state not written", { file: path, error }),
    });
    if (db.setAside) {
      log.error("state file was corrupt or unreadable: set aside, starting with empty state", {
        file: path,
        setAside: db.setAside,
      });
    }
    const retained = this.core.persistRetained(new RetainedTable(db));
    this.#sessions = new SessionPersistence(db);
    log.info("state file opened", { file: path, retained });
  }

  /**
   * Graceful shutdown: listeners stop accepting and tell their devices (FBP/1 ERROR 9, MQTT 5
   * DISCONNECT 0x8B), the pipeline drains, then the HTTP listener stops. Idempotent.
   */
  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      this.#ready = false;
      const log = this.#log.child("gateway");
      log.info("shutting down");
      try {
        this.#watcher?.close();
      } catch { /* closed */ }
      await this.#watching;
      this.#stopMonitor?.();
      await this.#sys?.close();
      this.#history?.close();
      // HTTP stops with the other listeners: waits and streams end, requests in progress get at
      // most http.shutdownGraceMs, then every connection is cut (a stalled upload cannot hold the
      // shutdown). Nothing unanswered was acknowledged.
      await this.#deviceApi?.close();
      await this.#dashboard?.close();
      await Promise.all(
        [...this.#listeners, ...(this.#http ? [this.#http] : [])].map((l) => l.close()),
      );
      await this.#settleRules(); // rule outputs still need the pipeline
      await this.core.close(); // the drain may still append to the spool
      await this.#rules?.close();
      this.#state?.close(); // after the drain: it may still queue for offline sessions
      await this.#northbound?.close();
      log.info("stopped");
    })();
  }

  /**
   * Attaches the rule engine: the configured rules, and with a config file a watch on it. An
   * engine without rules has no subscription and costs nothing per message.
   */
  async #attachRules(): Promise<void> {
    const c = this.config;
    const log = this.#log.child("gateway");
    const file = this.#options.configFile;
    const [{ attachRules }, { tableDeadLetterSink }] = await Promise.all([
      import("./rules/attach.ts"),
      import("./rules/dead_letter.ts"),
    ]);
    const nb = this.#northbound;
    this.#rules = await attachRules(this.core, {
      rules: c.rules,
      configFile: file,
      readRules: file ? async () => resolveConfig(await loadConfigFile(file)).rules : undefined,
      dataDir: c.dataDir,
      // A rule's northbound output goes to every bridge (each bridge's forward filters are
      // for device traffic; the rule chose this route), with the bridges as they are now.
      northbound: nb ? (out) => appendToBridges(nb, out) : undefined,
      metrics: this.core.metrics,
      // Dead letters go to the spool's dead-letter table when there is one (else logged).
      deadLetters: this.#options.deadLetters ?? (nb ? tableDeadLetterSink(nb) : undefined),
      log: this.#log,
    });
    if (c.rules.length) log.info("rules started", { rules: c.rules.length });
  }

  /**
   * Waits until the pipeline and the rules are quiet: messages still queued go to rules, whose
   * outputs enter the pipeline again (nothing queued or waiting, and no message handled in a
   * whole round; the drain loop itself holds one permit while it waits for the queue). Bounded.
   */
  async #settleRules(): Promise<void> {
    const engine = this.#rules?.engine;
    if (!engine) return;
    const { settleRules } = await import("./rules/attach.ts"); // loaded with the engine
    await settleRules(this.core, engine);
  }

  /** The rule engine, when rules are attached (list, enable, disable: docs/rules.md). */
  get rules(): RuleEngine | undefined {
    return this.#rules?.engine;
  }

  /** Same as {@link stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** Spools a rule's northbound output for every running bridge; resolves once committed. */
function appendToBridges(nb: Northbound, out: Message): Promise<void> {
  const bridges = nb.bridges;
  if (bridges.length === 0) {
    return Promise.reject(new Error("Cannot route upstream: no northbound bridge is running"));
  }
  return nb.spool.append(out, bridges.map((b) => b.partition)).then(() => {});
}
