// Compiled with `tsc --noEmit` by __test__/types.test.js: the other seed
// APIs' declarations accept their documented usage and reject wrong shapes.
import { createClient, FunctionsHttpError, FunctionsRelayError, FunctionsFetchError, FunctionsClient } from '../../supabase'
import { BaaS, wx } from '../../minapp'
import cloud = require('../../wechat')

async function supabaseUsage(): Promise<void> {
  const supabase = createClient('https://example.supabase.co', 'anon-key', { edgefc: { config: 'edgefc.json' } })
  const { data, error } = await supabase.functions.invoke<{ ok: boolean }>('hello', { body: { foo: 'bar' }, method: 'POST' })
  if (error instanceof FunctionsHttpError) {
    const status: number = error.context.status
    console.log(status, await error.context.json())
  } else if (error instanceof FunctionsRelayError || error instanceof FunctionsFetchError) {
    console.log(error.message)
  } else if (data) {
    const ok: boolean = data.ok
    console.log(ok)
  }
  new FunctionsClient('http://x/functions/v1').setAuth('token')
  // @ts-expect-error the method is one of HTTP's
  await supabase.functions.invoke('hello', { method: 'FETCH' })
}

async function minappUsage(): Promise<void> {
  const res = await wx.BaaS.invoke('helloWorld', { name: 'allen' })
  if (res.code === 0) {
    console.log(res.data)
  } else {
    const message: string = res.error.message
    console.log(message)
  }
  await BaaS.invokeFunction('helloWorld', { name: 'allen' }, false)
  // @ts-expect-error sync is a boolean
  await BaaS.invoke('helloWorld', {}, 'yes')
}

async function wechatUsage(): Promise<void> {
  cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV })
  const res = await cloud.callFunction<number>({ name: 'add', data: { x: 1, y: 2 } })
  const sum: number = res.result
  const requestID: string = res.requestID
  cloud.wx.cloud.callFunction({ name: 'add', data: { x: 1 }, success: (r) => console.log(r.result), fail: (e) => console.log(e.errCode) })
  console.log(sum, requestID, cloud.getWXContext().OPENID)
  // @ts-expect-error the name is required
  await cloud.callFunction({ data: {} })
}

export { supabaseUsage, minappUsage, wechatUsage }
