/// <reference types="node" />

import type { ErrorCodeMap, ErrorCodeValue } from './lib/core/error-codes'

/** Every code an {@link EdgeFCError} can carry (generated from the Rust core's list). */
export type { ErrorCodeValue }

export declare const ErrorCode: ErrorCodeMap

/** The one error type of this package: `code` is stable, `message` is for people. */
export declare class EdgeFCError extends Error {
  constructor(code: ErrorCodeValue, message: string)
  readonly name: 'EdgeFCError'
  readonly code: ErrorCodeValue
}

export type Payload = string | Buffer

/** A function named by its id (or ARN). */
export interface InvokeByIdParams {
  functionId: string
  serviceName?: string
  functionName?: string
}

/** A function named by its service and function names. */
export interface InvokeByNameParams {
  functionId?: undefined | null | ''
  serviceName: string
  functionName: string
}

interface InvokeOptions {
  /**
   * The gateway whose function this is (edgefc): the call goes through the
   * MQTT bridge to that gateway, which must list the function in its
   * `exposedFunctions`. Name the function by `serviceName` and
   * `functionName` (or a `functionId` that `remoteFunctions` maps).
   */
  gatewayId?: string | null
  /** Base64 of a JSON object; the invoked function gets it decoded as `context.invokerContext`. */
  invokerContext?: string
  /** Passed to the function as `event`: a string stays a string, a Buffer a Buffer. */
  payload?: Payload | Uint8Array
}

/** A Sync call (the default) waits for the function's result. */
export type SyncInvokeParams = (InvokeByIdParams | InvokeByNameParams) &
  InvokeOptions & { invocationType?: 'Sync' | null }

/** An Async call returns as soon as the runtime has queued it. */
export type AsyncInvokeParams = (InvokeByIdParams | InvokeByNameParams) & InvokeOptions & { invocationType: 'Async' }

export type InvokeParams = SyncInvokeParams | AsyncInvokeParams

export type InvocationType = 'Sync' | 'Async'

/** The result of a Sync invocation. */
export interface InvokeResult {
  /** Unset on success; `Handled` for `callback(err)`; `Unhandled` for a throw, rejection, crash or timeout. */
  functionError: 'Handled' | 'Unhandled' | undefined
  /** 200 for every invocation that reached the function. */
  statusCode: number
  /** The function's result: a string or Buffer as returned, other values as JSON. On a function error, the JSON error body. */
  payload: Payload
}

export type InvokeCallback<T> = (err: EdgeFCError | null, data?: T) => void

export interface FCClientOptions {
  /** The runtime's edgefc.json: the client uses its socket and admin token. */
  config?: string
  /** The runtime's socket; give `token` with it. */
  socketPath?: string
  token?: string
  /** How long a call may wait for any answer before failing with ERR_TIMEOUT. Unset: no limit beyond the function's own timeout. */
  timeoutMs?: number
  /** How long connecting may take before ERR_RUNTIME_UNAVAILABLE. Default 1000. */
  connectTimeoutMs?: number
}

/** Invokes functions hosted by the edgefc runtime; the drop-in for linkedge-core-sdk's FCClient. */
export declare class FCClient {
  /**
   * Inside a hosted function, takes no arguments (as upstream). Elsewhere,
   * pass `options`, or set EDGEFC_SOCKET and EDGEFC_TOKEN.
   */
  constructor(options?: FCClientOptions)
  invokeFunction(params: AsyncInvokeParams, callback: InvokeCallback<string>): void
  invokeFunction(params: SyncInvokeParams, callback: InvokeCallback<InvokeResult>): void
  invokeFunction(params: InvokeParams, callback: InvokeCallback<InvokeResult | string>): void
  invokeFunction(params: AsyncInvokeParams): Promise<string>
  invokeFunction(params: SyncInvokeParams): Promise<InvokeResult>
  invokeFunction(params: InvokeParams): Promise<InvokeResult | string>
  /** Publishes to the runtime's message router; gives the message id once routed. */
  publish(params: PublishParams, callback: InvokeCallback<string>): void
  publish(params: PublishParams): Promise<string>
}

export interface PublishParams {
  /** The topic, e.g. `/hello/world`; no wildcards. */
  topic: string
  /** Delivered as `event`: a string stays a string, a Buffer a Buffer. */
  payload: Payload | Uint8Array
}

export interface ThingParams {
  productKey: string
  deviceName: string
}

/** A thing as the thing function describes it (the example's has `tags` too). */
export interface ThingInfo {
  productKey: string
  deviceName: string
  [key: string]: unknown
}

/** Publishing and thing operations; the drop-in for linkedge-core-sdk's IoTData. */
export declare class IoTData {
  /** No arguments inside a hosted function; elsewhere the FCClient options. */
  constructor(options?: FCClientOptions)
  readonly fc: FCClient
  publish(params: PublishParams, callback: InvokeCallback<string>): void
  publish(params: PublishParams): Promise<string>
  /** `payload`: the names of the properties to read; gives `{name: value}`. */
  getThingProperties(params: ThingParams & { payload: string[] }, callback: InvokeCallback<Record<string, unknown>>): void
  getThingProperties(params: ThingParams & { payload: string[] }): Promise<Record<string, unknown>>
  /** `payload`: `{name: value}` to set. */
  setThingProperties(params: ThingParams & { payload: Record<string, unknown> }, callback: InvokeCallback<unknown>): void
  setThingProperties(params: ThingParams & { payload: Record<string, unknown> }): Promise<unknown>
  /** Calls `service` with `payload` (JSON-serializable) as its arguments; gives its output. */
  callThingService(params: ThingParams & { service: string; payload?: unknown }, callback: InvokeCallback<unknown>): void
  callThingService(params: ThingParams & { service: string; payload?: unknown }): Promise<unknown>
  /** `payload`: tags `[{key: value}]`; gives the things that have all of them. */
  getThingsWithTags(params: { payload: Array<Record<string, string>> }, callback: InvokeCallback<ThingInfo[]>): void
  getThingsWithTags(params: { payload: Array<Record<string, string>> }): Promise<ThingInfo[]>
}

export interface Credentials {
  accessKeyId: string
  accessKeySecret: string
  securityToken: string
}

/** The credentials of the runtime's config, for hosted functions. */
export declare class CredentialProviderChain {
  /** Without options, throws (as upstream) unless DEFFAULT_CREDENTIALS_RELATIVE_URI is set, as it is in every hosted function. */
  constructor(options?: FCClientOptions)
  /** Rejects with ERR_CREDENTIALS_UNAVAILABLE when none are configured. */
  resolvePromise(): Promise<Credentials>
}

/** One bound of the runtime: what it holds now, its limits, and how often it refused. */
export interface BoundStats {
  count: number
  maxCount: number
  bytes: number
  maxBytes: number
  refused: number
}

/** A latency histogram: `buckets` counts per bucket (not cumulative), bounded by `RuntimeStats.latencyBuckets`, `+Inf` last. */
export interface LatencyHistogram {
  count: number
  sumSeconds: number
  buckets: number[]
}

/** Invocation attempts ended, by outcome; outcomes never seen are left out. */
export type OutcomeCounts = Partial<Record<'ok' | 'handled_error' | 'unhandled_error' | 'timeout' | 'memory_limit' | 'worker_lost' | 'refused' | 'stopped', number>>

/** One function: its invocations, latency and worker. */
export interface FunctionStats {
  /** Its functionId (the ARN when the config gives none). */
  function: string
  serviceName: string
  functionName: string
  runMode: 'onDemand' | 'longLived'
  /** `message`: deliveries along QoS 0 routes (QoS 1 deliveries run as `async`). */
  invocations: { sync: OutcomeCounts; async: OutcomeCounts; message: OutcomeCounts }
  workerStarts: number
  workerStartFailures: number
  workerExits: Partial<Record<'stopped' | 'timeout' | 'memory_limit' | 'crashed', number>>
  /** From admission to the task sent to a worker. */
  queueWait: LatencyHistogram
  /** From the task sent to its result or timeout. */
  runTime: LatencyHistogram
  workers: Array<{ pid: number | null; rssBytes: number | null; uptimeSeconds: number; inFlight: number; retiring: boolean }>
  /** The last minute (or since the start, when sooner); quantiles are null without an invocation. */
  lastMinute: {
    seconds: number
    invocations: number
    errors: number
    perSecond: number
    runP50Seconds: number | null
    runP99Seconds: number | null
    queueP99Seconds: number | null
  }
}

/** A failed invocation, without its payload or message. */
export interface RecentError {
  atMs: number
  function: string
  type: 'sync' | 'async' | 'message'
  outcome: keyof OutcomeCounts
  /** The error's `errorType` (`TimeoutError`, `TypeError`…), or the code of a refusal (`ERR_QUEUE_FULL`). */
  errorType: string | null
  /** Empty for a refusal. */
  invocationId: string
  attempt: number
}

/** What `runtime.stats()`, `edgefc stats` and the observe listener's `/api/stats` report (`/metrics` encodes the same numbers). */
export interface RuntimeStats {
  version: string
  gatewayId: string
  uptimeSeconds: number
  published: number
  delivered: number
  droppedNoRoute: number
  /** Routed messages a target's full queue could not take. */
  refusedQueueFull: number
  /** Messages not sent to a subscriber more than `connections.maxOutputBytes` behind. */
  droppedSlowSubscriber: number
  disconnectedSlowSubscriber: number
  subscriptions: number
  connections: {
    open: number
    /** Of the open connections, workers' (the others are clients). */
    workers: number
    max: number
    unauthenticated: number
    maxUnauthenticated: number
    /** Unwritten output of every connection together. */
    outputBytes: number
    maxOutputBytesEach: number
    maxTotalOutputBytes: number
    acceptErrors: number
    evictedUnauthenticated: number
    helloTimeouts: number
    helloRefused: number
    refusedTooMany: number
    closedSlowReader: number
    refusedInFlight: number
    readPauses: number
  }
  queues: {
    /** Every function's running and waiting invocations together. */
    total: BoundStats
    /** `asyncPending`: Async invocations in the store, not yet ended. */
    functions: Array<{ function: string; running: number; maxConcurrency: number; admitted: BoundStats; asyncPending: number }>
  }
  /** The durable store: bytes held (`store.maxBytes`), dead letters, group commits and their total time. */
  store: {
    heldBytes: number
    maxBytes: number
    deadLetters: number
    maxDeadLetters: number
    deadLettersEvicted: number
    commits: number
    commitMicros: number
    damagedRecords: number
  }
  log: { functionLines: number; droppedLines: number; splitLines: number }
  /** Each MQTT broker link: connection, outbox and counts (see the README's "MQTT bridge"). */
  mqtt: Array<Record<string, string | number | boolean>>
  /** Invocations to and from other gateways. */
  remote: Record<string, string | number>
  functions: FunctionStats[]
  /** Upper bounds, in seconds, of the latency histograms' buckets. */
  latencyBuckets: number[]
  /** The last 50 failed invocations, newest first. */
  recentErrors: RecentError[]
  routes: Array<{ source: string; filter: string; target: string; qos: 0 | 1 }>
}

/** The earlier name of {@link RuntimeStats}. */
export type RouterStats = RuntimeStats

/** A runtime started in this process with {@link startRuntime}. */
export declare class Runtime {
  readonly socketPath: string
  /** The admin token now: it follows `edgefc token rotate`. */
  readonly adminToken: string
  /** `http://<address>/` of the observe listener (metrics, status page) when `observe.listen` is set, else null. */
  readonly observeUrl: string | null
  /** An FCClient that talks to this runtime with its admin token. */
  client(options?: Omit<FCClientOptions, 'config' | 'socketPath' | 'token'>): FCClient
  /** Every number the runtime keeps: the same as `edgefc stats` and `/metrics`. */
  stats(): Promise<RuntimeStats>
  /** Stops every worker, closes the socket and removes it. */
  stop(): Promise<void>
}

/** Starts the runtime described by an edgefc.json in this process. Rejects with ERR_CONFIG. */
export declare function startRuntime(configPath: string): Promise<Runtime>

/** What a hosted function's handler gets as `context`. */
export interface HandlerContext {
  /** The invocation's id: the same on every attempt of an Async invocation. */
  requestId: string
  /** The same as `requestId`: what handlers with side effects deduplicate on (delivery is at least once). */
  invocationId: string
  /** 1 for the first attempt, more for retries of a failed Async invocation. */
  attempt: number
  /** The caller's invokerContext, decoded from base64 JSON; `{}` when none was sent. For a routed message, `custom` is `{source, topic}`. */
  invokerContext: Record<string, unknown> & { custom?: any }
  functionId: string
  serviceName: string
  functionName: string
}

/** The signature of `exports.handler` in a hosted function. */
export type Handler<TEvent extends Payload = Payload, TResult = unknown> = (
  event: TEvent,
  context: HandlerContext,
  callback: (err?: unknown, result?: TResult) => void,
) => void | Promise<TResult>
