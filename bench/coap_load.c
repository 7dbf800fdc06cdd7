/*
 * coap_load: a closed-loop CoAP load client in C, so the client is not what caps the server.
 * Built and run by bench/coap_load.ts (see there); usable alone:
 *
 *   cc -O2 -o coap_load bench/coap_load.c
 *   coap_load HOST PORT DEVICES WARMUP_S SECONDS ferry|libcoap
 *
 * DEVICES UDP sockets (one endpoint each, a device), each with one Confirmable request
 * outstanding: CON POST /d/dev{i}/telemetry (ferry) or CON PUT /example_data (libcoap), 2-byte
 * token, a new message ID per request; the next request goes out when the ACK with that message
 * ID arrives. The devices start spread over the first 500 ms. A request unanswered for 2-3 s
 * (random, as CoAP's retransmission timeout) is counted as a timeout and replaced by a new one
 * (a datagram lost in a socket buffer). After WARMUP_S seconds, for SECONDS seconds, it counts
 * answers by class and measures latency; prints one JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_NS 2000000000LL
#define HIST_US 1000000 /* latency histogram: 1 µs buckets up to 1 s */

typedef struct {
  int fd;
  uint16_t mid;
  int64_t sent_at;
  int64_t deadline;
  uint8_t req[96];
  int len;
} device_t;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Appends one option (RFC 7252 §3.1) with delta < 13 and length < 13 or < 269. */
static int put_option(uint8_t *p, int *last, int number, const char *value, int vlen) {
  int delta = number - *last, n = 0;
  *last = number;
  uint8_t dn = delta < 13 ? delta : 13, ln = vlen < 13 ? vlen : 13;
  p[n++] = (uint8_t)(dn << 4 | ln);
  if (dn == 13) p[n++] = (uint8_t)(delta - 13);
  if (ln == 13) p[n++] = (uint8_t)(vlen - 13);
  memcpy(p + n, value, vlen);
  return n + vlen;
}

static int build(device_t *d, int i, int ferry) {
  uint8_t *p = d->req;
  int n = 0, last = 0;
  p[n++] = 0x42; /* ver 1, CON, token length 2 */
  p[n++] = ferry ? 0x02 : 0x03; /* POST or PUT */
  p[n++] = 0;
  p[n++] = 0; /* message ID, set per request */
  p[n++] = (uint8_t)(i >> 8);
  p[n++] = (uint8_t)i;
  if (ferry) {
    char id[16];
    int idlen = snprintf(id, sizeof id, "dev%d", i);
    n += put_option(p + n, &last, 11, "d", 1);
    n += put_option(p + n, &last, 11, id, idlen);
    n += put_option(p + n, &last, 11, "telemetry", 9);
  } else {
    n += put_option(p + n, &last, 11, "example_data", 12);
  }
  n += put_option(p + n, &last, 12, "", 0); /* Content-Format 0 (text/plain) */
  p[n++] = 0xff;
  memcpy(p + n, "21.5", 4);
  n += 4;
  d->len = n;
  return n;
}

static void send_req(device_t *d, int64_t t) {
  d->mid++;
  d->req[2] = (uint8_t)(d->mid >> 8);
  d->req[3] = (uint8_t)d->mid;
  d->sent_at = t;
  /* like RFC 7252 §4.2's ACK_TIMEOUT × ACK_RANDOM_FACTOR: 2..3 s, so lost requests are not all
   * sent again in one burst (which a socket buffer would drop again) */
  d->deadline = t + TIMEOUT_NS + (int64_t)(rand() % 1000) * 1000000LL;
  (void)send(d->fd, d->req, d->len, 0);
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: coap_load HOST PORT DEVICES WARMUP_S SECONDS ferry|libcoap\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]), ndev = atoi(argv[3]);
  double warm = atof(argv[4]), secs = atof(argv[5]);
  int ferry = strcmp(argv[6], "ferry") == 0;
  struct rlimit rl = {ndev + 64, ndev + 64};
  setrlimit(RLIMIT_NOFILE, &rl);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "coap_load: bad IPv4 address %s\n", host);
    return 2;
  }
  int ep = epoll_create1(0);
  device_t *devs = calloc((size_t)ndev, sizeof *devs);
  uint32_t *hist = calloc(HIST_US + 1, sizeof *hist);
  srand((unsigned)now_ns());
  for (int i = 0; i < ndev; i++) {
    device_t *d = &devs[i];
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (d->fd < 0 || connect(d->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      perror("coap_load: socket");
      return 1;
    }
    d->mid = (uint16_t)rand();
    build(d, i, ferry);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, d->fd, &ev);
  }
  int64_t start = now_ns(), t0 = start + (int64_t)(warm * 1e9), t1 = t0 + (int64_t)(secs * 1e9);
  /* staggered start: device i's first request is due at start + i × 500 ms / DEVICES */
  for (int i = 0; i < ndev; i++) {
    devs[i].sent_at = start;
    devs[i].deadline = start + (int64_t)i * 500000000LL / ndev;
  }
  uint64_t ok = 0, other = 0, timeouts = 0, stray = 0;
  int64_t last_scan = start;
  struct epoll_event evs[256];
  uint8_t buf[2048];
  for (;;) {
    int64_t t = now_ns();
    if (t >= t1) break;
    int n = epoll_wait(ep, evs, 256, 5);
    t = now_ns();
    for (int k = 0; k < n; k++) {
      device_t *d = &devs[evs[k].data.u32];
      for (;;) {
        ssize_t r = recv(d->fd, buf, sizeof buf, 0);
        if (r < 0) break;
        /* our ACK: type 2, same message ID */
        if (r < 4 || ((buf[0] >> 4) & 3) != 2 || ((buf[2] << 8) | buf[3]) != d->mid) {
          stray++;
          continue;
        }
        if (t >= t0 && d->sent_at >= t0) {
          if ((buf[1] >> 5) == 2) ok++;
          else other++;
          int64_t us = (t - d->sent_at) / 1000;
          hist[us > HIST_US ? HIST_US : us]++;
        }
        send_req(d, t);
      }
    }
    if (t - last_scan > 5000000LL) {
      last_scan = t;
      for (int i = 0; i < ndev; i++) {
        if (t >= devs[i].deadline) {
          if (t >= t0 && devs[i].sent_at >= t0) timeouts++;
          send_req(&devs[i], t);
        }
      }
    }
  }
  uint64_t total = 0, acc = 0;
  for (int i = 0; i <= HIST_US; i++) total += hist[i];
  int p50 = -1, p99 = -1;
  for (int i = 0; i <= HIST_US && total; i++) {
    acc += hist[i];
    if (p50 < 0 && acc * 2 >= total) p50 = i;
    if (p99 < 0 && acc * 100 >= total * 99) p99 = i;
  }
  printf("{\"devices\":%d,\"seconds\":%.1f,\"ok\":%llu,\"other\":%llu,\"timeouts\":%llu,"
         "\"stray\":%llu,\"rps\":%.0f,\"p50_us\":%d,\"p99_us\":%d}\n",
         ndev, secs, (unsigned long long)ok, (unsigned long long)other,
         (unsigned long long)timeouts, (unsigned long long)stray, (ok + other) / secs, p50, p99);
  return 0;
}
