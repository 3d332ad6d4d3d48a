/*
 * delayd: the user-space delay line of fl-crb's emulator, for kernels without netem.
 *
 * iptables rules at the bridge ports send each shaped link's packets, per direction, to
 * their own NFQUEUE number. delayd binds every queue named on its command line, holds
 * each packet for the queue's delay (plus a normally distributed jitter) and then
 * accepts it. The delay counts from the packet's kernel receive timestamp when the
 * kernel supplies one (so time spent waiting in the socket does not add to it), else
 * from the moment delayd reads it.
 *
 * Packets of one queue leave in arrival order: a packet is never released before the
 * one ahead of it (netem may reorder under jitter; a FIFO delay line keeps TCP sane).
 * Because of that order, one batch verdict releases every due packet of a queue.
 *
 * Usage: delayd [--seed N] [--parent PID] [--realtime PRIO] QUEUE:DELAY_NS:JITTER_NS ...
 * Prints "ready" on stdout once every queue is bound, one JSON line of statistics on
 * SIGUSR1 and at exit; exits on SIGTERM/SIGINT, or when the parent process exits. It
 * watches that process through a pidfd: PR_SET_PDEATHSIG would fire when the *thread*
 * that started delayd ends, and the emulator starts a fault's daemon from a worker thread
 * that ends before the fault does (it is the fallback only on kernels before 5.3).
 * Build: gcc -O2 -o delayd delayd.c -lnetfilter_queue -lnfnetlink -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/netfilter.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter/nfnetlink_queue.h>

#define KERNEL_QUEUE_PACKETS 16384 /* packets the kernel may hold per queue for us */
#define SOCKET_BUFFER_BYTES (32 << 20)
#define RECV_BURST 256              /* messages read before releasing due packets again */
#define HIST_BUCKET_NS 10000        /* histograms count in 10 µs buckets ... */
#define HIST_BUCKETS 10000          /* ... up to 100 ms; the last bucket holds the rest */

struct queue {
    uint16_t num;
    int64_t delay_ns;
    int64_t jitter_ns;
    int64_t last_release_ns; /* FIFO: no packet leaves before this */
    struct nfq_q_handle *handle;
    int touched;             /* has due packets in the current release pass */
    uint32_t release_id;     /* highest due packet id in the current release pass */
};

struct held {
    int64_t release_ns;
    uint32_t id;
    uint32_t queue_index;
};

struct histogram {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    int64_t max_ns;
};

static struct queue *queues;
static size_t queue_count;
static struct held *heap;
static size_t heap_len, heap_cap, held_max;
static uint64_t packets, stamped, enobufs, verdict_errors;
static struct histogram lateness, receive_lag;
static uint64_t rng_state;

static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t next_random(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double standard_normal(void) { /* Box-Muller */
    double u1 = ((next_random() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (next_random() >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void record(struct histogram *h, int64_t ns) {
    if (ns < 0) ns = 0;
    size_t bucket = (size_t)(ns / HIST_BUCKET_NS);
    h->counts[bucket < HIST_BUCKETS ? bucket : HIST_BUCKETS - 1]++;
    h->total++;
    if (ns > h->max_ns) h->max_ns = ns;
}

static double percentile_us(const struct histogram *h, double fraction) {
    if (h->total == 0) return 0.0;
    uint64_t rank = (uint64_t)ceil(fraction * (double)h->total), seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) return (double)(i + 1) * HIST_BUCKET_NS / 1000.0;
    }
    return (double)h->max_ns / 1000.0;
}

static void print_histogram(const char *name, const struct histogram *h) {
    printf("\"%s\": {\"count\": %" PRIu64 ", \"p50\": %.0f, \"p99\": %.0f, \"p999\": %.0f, "
           "\"max\": %.0f}", name, h->total, percentile_us(h, 0.5), percentile_us(h, 0.99),
           percentile_us(h, 0.999), (double)h->max_ns / 1000.0);
}

static void print_stats(void) {
    printf("{\"packets\": %" PRIu64 ", \"stamped\": %" PRIu64 ", \"held\": %zu, "
           "\"held_max\": %zu, \"enobufs\": %" PRIu64 ", \"verdict_errors\": %" PRIu64 ", ",
           packets, stamped, heap_len, held_max, enobufs, verdict_errors);
    print_histogram("late_us", &lateness);
    printf(", ");
    print_histogram("receive_lag_us", &receive_lag);
    printf("}\n");
}

static void heap_push(struct held item) {
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 4096;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (!heap) { perror("delayd: realloc"); exit(1); }
    }
    size_t i = heap_len++;
    while (i > 0 && heap[(i - 1) / 2].release_ns > item.release_ns) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = item;
    if (heap_len > held_max) held_max = heap_len;
}

static struct held heap_pop(void) {
    struct held top = heap[0], last = heap[--heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap_len) break;
        if (child + 1 < heap_len && heap[child + 1].release_ns < heap[child].release_ns) child++;
        if (heap[child].release_ns >= last.release_ns) break;
        heap[i] = heap[child];
        i = child;
    }
    if (heap_len > 0) heap[i] = last;
    return top;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data) {
    (void)qh;
    (void)msg;
    struct queue *q = data;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(nfa);
    if (!header) return 0;
    int64_t now = clock_ns(CLOCK_MONOTONIC), arrival = now;
    struct timeval tv;
    if (nfq_get_timestamp(nfa, &tv) == 0 && tv.tv_sec > 0) {
        /* the kernel stamps in wall-clock time; move it onto the monotonic clock */
        int64_t stamp = (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
        int64_t candidate = stamp - (clock_ns(CLOCK_REALTIME) - now);
        if (candidate <= now && now - candidate < 1000000000) {
            arrival = candidate;
            stamped++;
            record(&receive_lag, now - arrival);
        }
    }
    int64_t delay = q->delay_ns;
    if (q->jitter_ns > 0) delay += (int64_t)llround(standard_normal() * (double)q->jitter_ns);
    if (delay < 0) delay = 0;
    int64_t release = arrival + delay;
    if (release < q->last_release_ns) release = q->last_release_ns;
    q->last_release_ns = release;
    heap_push((struct held){release, ntohl(header->packet_id), (uint32_t)(q - queues)});
    packets++;
    return 0;
}

/* Accept every packet due by `now`: one batch verdict per queue. */
static void release_due(int64_t now) {
    size_t touched_count = 0;
    static size_t *touched;
    if (!touched) touched = calloc(queue_count, sizeof *touched);
    while (heap_len > 0 && heap[0].release_ns <= now) {
        struct held item = heap_pop();
        struct queue *q = &queues[item.queue_index];
        if (now != INT64_MAX) record(&lateness, now - item.release_ns);
        if (!q->touched) {
            q->touched = 1;
            q->release_id = item.id;
            touched[touched_count++] = item.queue_index;
        } else if ((int32_t)(item.id - q->release_id) > 0) {
            q->release_id = item.id;
        }
    }
    for (size_t i = 0; i < touched_count; i++) {
        struct queue *q = &queues[touched[i]];
        if (nfq_set_verdict_batch(q->handle, q->release_id, NF_ACCEPT) < 0) verdict_errors++;
        q->touched = 0;
    }
}

static void parse_queue(const char *arg, struct queue *q) {
    unsigned num;
    long long delay, jitter;
    char extra;
    if (sscanf(arg, "%u:%lld:%lld%c", &num, &delay, &jitter, &extra) != 3 || num > 65535 ||
        delay < 0 || jitter < 0) {
        fprintf(stderr, "delayd: bad queue spec '%s'; expected QUEUE:DELAY_NS:JITTER_NS "
                        "with QUEUE in 0..65535 and non-negative times\n", arg);
        exit(2);
    }
    *q = (struct queue){.num = (uint16_t)num, .delay_ns = delay, .jitter_ns = jitter};
}

static void bind_queues(struct nfq_handle *h) {
    for (size_t i = 0; i < queue_count; i++) {
        struct queue *q = &queues[i];
        q->handle = nfq_create_queue(h, q->num, on_packet, q);
        if (!q->handle) {
            fprintf(stderr, "delayd: cannot bind NFQUEUE %u: %s (is another process using "
                            "it?)\n", q->num, strerror(errno));
            exit(1);
        }
        if (nfq_set_mode(q->handle, NFQNL_COPY_META, 0) < 0 ||
            nfq_set_queue_maxlen(q->handle, KERNEL_QUEUE_PACKETS) < 0) {
            fprintf(stderr, "delayd: cannot configure NFQUEUE %u: %s\n", q->num,
                    strerror(errno));
            exit(1);
        }
        /* keep GSO packets whole: the delay line need not see single segments */
        nfq_set_queue_flags(q->handle, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
    }
}

/* A descriptor that polls readable once process `parent` has exited; -1 for none. */
static int watch_parent(long parent) {
    if (parent <= 0) return -1;
    int watched = (int)syscall(SYS_pidfd_open, (pid_t)parent, 0);
    if (watched < 0) { /* kernel before 5.3: die with the thread that started us */
        fprintf(stderr, "delayd: warning: no pidfd (%s); following the parent thread "
                        "instead\n", strerror(errno));
        prctl(PR_SET_PDEATHSIG, SIGTERM);
    }
    if (getppid() != parent) exit(1); /* it had died already */
    return watched;
}

static void set_options(int argc, char **argv, int *first_queue, long *parent) {
    long realtime = 0;
    rng_state = (uint64_t)clock_ns(CLOCK_REALTIME);
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--seed") == 0) rng_state = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--parent") == 0) *parent = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--realtime") == 0) realtime = strtol(argv[i + 1], NULL, 10);
        else { fprintf(stderr, "delayd: unknown option '%s'\n", argv[i]); exit(2); }
    }
    if (realtime > 0) {
        struct sched_param sp = {.sched_priority = (int)realtime};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) /* e.g. no CAP_SYS_NICE */
            fprintf(stderr, "delayd: warning: cannot use SCHED_FIFO %ld (%s); delays will be "
                            "less precise on a busy machine\n", realtime, strerror(errno));
    }
    *first_queue = i;
}

int main(int argc, char **argv) {
    int first;
    long parent = 0;
    set_options(argc, argv, &first, &parent);
    int parent_fd = watch_parent(parent); /* die with the supervisor, even if it is killed */
    queue_count = (size_t)(argc - first);
    if (queue_count == 0) {
        fprintf(stderr, "usage: delayd [--seed N] [--parent PID] [--realtime PRIO] "
                        "QUEUE:DELAY_NS:JITTER_NS ...\n");
        return 2;
    }
    queues = calloc(queue_count, sizeof *queues);
    for (size_t i = 0; i < queue_count; i++) parse_queue(argv[first + (int)i], &queues[i]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    prctl(PR_SET_TIMERSLACK, 1);

    /* signals arrive through a signalfd polled with the queue socket: a handler would
       never run while the socket always has data (ppoll returns ready fds first) */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGUSR1);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    int signals = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signals < 0) { perror("delayd: signalfd"); return 1; }

    struct nfq_handle *h = nfq_open();
    if (!h) { perror("delayd: nfq_open (needs root)"); return 1; }
    nfq_bind_pf(h, AF_INET); /* a no-op on current kernels, needed on old ones */
    int fd = nfq_fd(h), size = SOCKET_BUFFER_BYTES, on = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMP, &on, sizeof on); /* makes the kernel stamp */
    bind_queues(h);
    printf("ready\n");

    static char buffer[65536] __attribute__((aligned));
    int stop = 0;
    while (!stop) {
        release_due(clock_ns(CLOCK_MONOTONIC));
        struct timespec timeout, *wait = NULL;
        if (heap_len > 0) {
            int64_t left = heap[0].release_ns - clock_ns(CLOCK_MONOTONIC);
            if (left < 0) left = 0;
            timeout = (struct timespec){left / 1000000000, left % 1000000000};
            wait = &timeout;
        }
        struct pollfd pfds[3] = {{.fd = fd, .events = POLLIN},
                                 {.fd = signals, .events = POLLIN},
                                 {.fd = parent_fd, .events = POLLIN}}; /* -1: ignored */
        if (ppoll(pfds, 3, wait, NULL) <= 0) continue;
        if (pfds[2].revents) stop = 1; /* the parent exited */
        struct signalfd_siginfo info;
        while (read(signals, &info, sizeof info) == (ssize_t)sizeof info) {
            if (info.ssi_signo == SIGUSR1) print_stats();
            else stop = 1;
        }
        if (!(pfds[0].revents & POLLIN)) continue;
        for (int n = 0; n < RECV_BURST; n++) {
            ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (got < 0) {
                if (errno == ENOBUFS) { enobufs++; continue; } /* a later batch verdict
                                                                  releases what we missed */
                if (errno == EAGAIN || errno == EINTR) break;
                perror("delayd: recv");
                return 1;
            }
            nfq_handle_packet(h, buffer, (int)got);
        }
    }
    release_due(INT64_MAX); /* let what is in flight go rather than drop it */
    print_stats();
    for (size_t i = 0; i < queue_count; i++) nfq_destroy_queue(queues[i].handle);
    nfq_close(h);
    return 0;
}
