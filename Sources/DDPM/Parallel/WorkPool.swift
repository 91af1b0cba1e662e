// A small persistent thread pool: `threads − 1` workers that sleep on a condition variable
// between jobs, plus the calling thread, which works too. No thread is created per job.
//
//   parallelFor(chunks: n, job)      job: (chunk, worker) -> Void, made once and kept
//
// runs job(c, w) once for every chunk c in 0..<n, each chunk taken by whichever thread is
// free next (worker w in 0..<threads names the thread, for per-thread scratch; the caller is
// worker 0). What a chunk computes must depend only on c, never on w, so that results do not
// depend on the thread count or on which thread ran what (see ChunkPlan.swift).
//
// A job allocates nothing when its closure is made once and kept by the caller (a stored
// property set up with it, reading the arguments of the call from its owner): the pool only
// retains it for the call. A closure literal at the call would allocate its context, and
// withoutActuallyEscaping (to publish a non-escaping closure) allocates its escape check.
//
// A worker with nothing to do first spins for a while (`spinLimit` looks at `generation`,
// about 0.1 ms) before it sleeps: the jobs of a sampling loop come back to back, a fraction
// of a millisecond apart, and waking a sleeping thread costs about as much.
//
// A call made while another job runs (a second model on another thread), or while the pool
// is being resized, runs its chunks serially on the caller, as worker 0. parallelForIfFree
// instead returns false then, so that its caller runs the work whole (a GEMM called inside
// the engine's per-chunk jobs, see Kernels/Gemm.swift).
//
// Two condition variables, each with its own waiters (issue 19: one variable for both let a
// worker's single wake-up reach a waiting resize instead of the job's caller, which then
// slept forever): `done` wakes the one caller waiting for its job's chunks; `idle` wakes
// whoever waits for the pool to be free (a resize, or a job that will run serially anyway
// does not wait). A job names the most workers it may use (`workers:`), so that a resize that
// grows the pool between a caller's sizing of per-worker scratch and its job cannot hand a
// chunk to a worker index the caller has no scratch for.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

final class WorkPool: @unchecked Sendable {  // thread-safe: every shared field is guarded by `mutex`
    /// The process's pool (ddpm_set_num_threads sets its size).
    static let shared = WorkPool(threads: BLASThreads.initial)

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)  // workers wait for a job
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)  // the job's caller waits for its chunks
    private let idle = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)  // a resize waits for the pool to be free
    private var workers: [pthread_t] = []
    /// Threads a job runs on, the caller included.
    private(set) var threads = 1
    // The current job, guarded by `mutex`. Not an Optional: a closure inside a generic type is
    // stored re-abstracted, and the thunk that converts it allocates on every call.
    private var job: (Int, Int) -> Void = WorkPool.idle
    nonisolated(unsafe) private static let idle: (Int, Int) -> Void = { _, _ in }
    private var chunkCount = 0, nextChunk = 0, finished = 0
    /// Workers with an index below this take chunks of the current job.
    private var workerLimit = 0
    private var busy = false, stopping = false
    /// Counts the jobs published (and the stops), for spinning workers to notice without the lock.
    private let generation = Atomic<Int>(0)
    /// Looks at `generation` before a worker sleeps.
    private static let spinLimit = 100_000

    private init(threads: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
        pthread_cond_init(idle, nil)
        BLASThreads.prepare()
        resize(threads)
    }

    /// Runs body(chunk, worker) for every chunk in 0..<n; returns when all are done. The
    /// worker index passed is below `maxWorkers` (and below `threads`).
    func parallelFor(chunks n: Int, workers maxWorkers: Int = .max, _ body: @escaping (_ chunk: Int, _ worker: Int) -> Void) {
        guard n > 0 else { return }
        pthread_mutex_lock(mutex)
        guard threads > 1, maxWorkers > 1, n > 1, !busy else {
            pthread_mutex_unlock(mutex)
            for c in 0..<n { body(c, 0) }
            return
        }
        runLocked(chunks: n, workers: maxWorkers, body)
    }

    /// Runs body(chunk, worker) for every chunk in 0..<n on the pool and returns true, if the
    /// pool is free (more than one thread, no job running, not resizing); otherwise returns
    /// false at once, having run nothing, and the caller does the work itself. `prepare` runs
    /// once the pool is claimed and before any chunk starts: it may write the state a stored
    /// `body` reads (state no other caller may then touch until this call returns). A call from
    /// inside a job (a GEMM inside the engine's per-chunk work) always gets false.
    func parallelForIfFree(chunks n: Int, prepare: () -> Void, _ body: @escaping (_ chunk: Int, _ worker: Int) -> Void) -> Bool {
        guard n > 1 else { return false }
        pthread_mutex_lock(mutex)
        guard threads > 1, !busy else {
            pthread_mutex_unlock(mutex)
            return false
        }
        prepare()
        runLocked(chunks: n, workers: .max, body)
        return true
    }

    /// Publishes the job, runs chunks on the caller too, waits for the rest, frees the pool.
    /// Called with `mutex` held and the pool free; returns with it released.
    private func runLocked(chunks n: Int, workers maxWorkers: Int, _ body: @escaping (Int, Int) -> Void) {
        (job, chunkCount, nextChunk, finished, busy, workerLimit) = (body, n, 0, 0, true, maxWorkers)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(wake)
        while nextChunk < chunkCount {
            let c = nextChunk
            nextChunk += 1
            pthread_mutex_unlock(mutex)
            run(c, worker: 0)
            pthread_mutex_lock(mutex)
            finished += 1
        }
        while finished < chunkCount { pthread_cond_wait(done, mutex) }
        (job, busy, workerLimit) = (WorkPool.idle, false, 0)
        pthread_cond_broadcast(idle)  // resizes may wait for the job to end
        pthread_mutex_unlock(mutex)
    }

    /// One chunk of the current job; every reference to the body taken here ends here.
    @inline(never)
    private func run(_ chunk: Int, worker: Int) {
        job(chunk, worker)
    }

    /// A worker's life: wait for chunks, run them, until the pool shrinks.
    private func workerLoop(_ index: Int) {
        pthread_mutex_lock(mutex)
        while true {
            if !stopping && !hasChunk(for: index) {
                // Nothing to do: spin until a job is published, or sleep.
                let seen = generation.load(ordering: .relaxed)
                pthread_mutex_unlock(mutex)
                var spins = 0
                while generation.load(ordering: .acquiring) == seen && spins < WorkPool.spinLimit { spins += 1 }
                pthread_mutex_lock(mutex)
                while !stopping && !hasChunk(for: index) { pthread_cond_wait(wake, mutex) }
            }
            if stopping { break }
            let c = nextChunk
            nextChunk += 1
            pthread_mutex_unlock(mutex)
            run(c, worker: index)
            pthread_mutex_lock(mutex)
            finished += 1
            if finished == chunkCount { pthread_cond_signal(done) }  // only the job's caller waits on `done`
        }
        pthread_mutex_unlock(mutex)
    }

    /// Whether worker `index` may take a chunk now (under `mutex`).
    private func hasChunk(for index: Int) -> Bool { nextChunk < chunkCount && index < workerLimit }

    /// Sets the number of threads (the caller included); joins or starts workers as needed.
    /// Waits for a running job to finish first; jobs started meanwhile run serially on their callers.
    func resize(_ n: Int) {
        let n = max(1, n)
        pthread_mutex_lock(mutex)
        while busy { pthread_cond_wait(idle, mutex) }
        guard n != threads || workers.count != n - 1 else { pthread_mutex_unlock(mutex); return }
        busy = true  // the pool is ours until the new workers run
        stopping = true
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
        for w in workers { pthread_join(w, nil) }
        pthread_mutex_lock(mutex)
        (workers, stopping, threads) = ([], false, 1)
        for index in 1..<n {
            let start = Unmanaged.passRetained(WorkerStart(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            guard pthread_create(&thread, nil, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                start.pool.workerLoop(start.index)
                return nil
            }, start) == 0 else {
                Unmanaged<WorkerStart>.fromOpaque(start).release()
                break  // fewer threads than asked: still correct, only slower
            }
            workers.append(thread)
        }
        threads = workers.count + 1
        busy = false
        pthread_cond_broadcast(idle)
        pthread_mutex_unlock(mutex)
    }

    private final class WorkerStart {
        let pool: WorkPool, index: Int
        init(pool: WorkPool, index: Int) { (self.pool, self.index) = (pool, index) }
    }
}
