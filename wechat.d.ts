// `require('edgefc/wechat')` (hosted functions: `require('wx-server-sdk')`):
// WeChat cloud's callFunction over the local edgefc runtime.

import type { EdgeFCEndpoint } from './supabase'

declare namespace cloud {
  interface CallFunctionResult<T = any> {
    result: T
    requestID: string
    /** 'callFunction:ok' (server), 'cloud.callFunction:ok' (mini program). */
    errMsg: string
  }

  /** A failed call: WeChat's errCode (-1, -501000, -501004, -501007, -504002) and errMsg. */
  interface CloudError extends Error {
    errCode: number
    errMsg: string
    requestID?: string
  }

  interface CallFunctionParams<T = any> {
    name: string
    data?: Record<string, any>
    config?: { env?: string }
    /** Milliseconds the caller waits; past them the call fails with errCode -1. */
    timeout?: number
    success?: (result: CallFunctionResult<T>) => void
    fail?: (error: CloudError) => void
    complete?: () => void
  }

  interface WXContext {
    OPENID: string
    APPID: string
    UNIONID: string
    ENV: string
    SOURCE: string
  }

  interface Cloud {
    readonly DYNAMIC_CURRENT_ENV: symbol
    init(options?: { env?: string | symbol | Record<string, string>; timeout?: number; edgefc?: EdgeFCEndpoint }): void
    /** A Promise, and the callbacks when given. */
    callFunction<T = any>(params: CallFunctionParams<T>): Promise<CallFunctionResult<T>>
    getWXContext(): WXContext
  }
}

declare const cloud: cloud.Cloud & {
  Cloud: new (errMsgPrefix: string) => cloud.Cloud
  /** The mini-program side: `wx.cloud.callFunction`. */
  wx: { cloud: cloud.Cloud }
}
export = cloud
