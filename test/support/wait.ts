/** Waiting helpers shared by the test suites: every wait is bounded, so a test fails instead of hanging. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Settles with the rejection reason. Fails if the promise resolves, or is still pending after
 * `withinMs` (a hang is a failure of its own, not a rejection).
 */
export async function rejection(promise: Promise<unknown>, withinMs = 10_000): Promise<Error & { code?: string; reason?: string; cause?: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${withinMs} ms (expected a rejection)`)), withinMs);
  });
  try {
    await Promise.race([promise, hang]);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('still pending after')) throw err;
    return err as Error;
  } finally {
    clearTimeout(timer);
  }
  throw new Error('expected the promise to reject');
}

/** Polls `cond` every `stepMs` until it holds; throws after `timeoutMs`, naming `what`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 3000, what = 'condition', stepMs = 5): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}
