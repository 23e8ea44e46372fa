/*
 * A small, fast Modbus TCP server for bench/modbus_poll.py, on libmodbus.
 *
 * One process, one select() loop, many connections. All four tables hold
 * 65536 entries; holding and input register i starts at i & 0x7fff. With
 * --change-stride N (N > 0), every read request of registers increments
 * every N-th register of the range it asks for after answering, so the
 * client sees about 1/N of its values change per poll and the engine's
 * change path is measured, not only its "unchanged" shortcut.
 *
 * With --stats-ms M (M > 0; bench/scale.py) it also prints, every M ms,
 *   stats <CLOCK_MONOTONIC seconds> <register reads answered> <registers changed>
 * (counters since the start), so a bench can tell how many changes it offered
 * in a window, on the same clock as Python's time.monotonic().
 *
 * With --busy-poll-us U (U > 0; bench/modbus_poll.py) it polls its sockets
 * without sleeping until U microseconds have passed without a request, and
 * only then sleeps in select(). On loopback in a virtual machine, a request
 * sent to a server asleep on the other vCPU makes the sender's send() pay
 * for waking that vCPU (tens of microseconds here), and the slower of two
 * compared clients leaves the server asleep more often, so it pays more:
 * the comparison measured the server's sleep, not the clients. A real
 * device is on another machine and its wake-up is not the client's CPU.
 *
 * Build (bench/modbus_poll.py does it for you):
 *   cc -O2 -o var/bench-build/modbus_server bench/modbus_server.c $(pkg-config --cflags --libs libmodbus)
 * Run:
 *   var/bench-build/modbus_server --port 15020 [--change-stride 10] [--stats-ms 100] [--busy-poll-us 2000]
 * It prints "listening on 127.0.0.1:<port>" once ready; port 0 picks a free port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TABLE_SIZE 65536

static double monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    /* End with the benchmark that started us, even if it is killed: never leave a server behind. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) return 1;
    int port = 0;
    int stride = 0;
    int stats_ms = 0;
    int busy_poll_us = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--change-stride") == 0 && i + 1 < argc) {
            stride = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--stats-ms") == 0 && i + 1 < argc) {
            stats_ms = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--busy-poll-us") == 0 && i + 1 < argc) {
            busy_poll_us = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--port N] [--change-stride N] [--stats-ms M] [--busy-poll-us U]\n", argv[0]);
            return 2;
        }
    }

    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new(TABLE_SIZE, TABLE_SIZE, TABLE_SIZE, TABLE_SIZE);
    if (ctx == NULL || map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    for (int i = 0; i < TABLE_SIZE; i++) {
        map->tab_registers[i] = (uint16_t)(i & 0x7fff);
        map->tab_input_registers[i] = (uint16_t)(i & 0x7fff);
        map->tab_bits[i] = (uint8_t)(i & 1);
        map->tab_input_bits[i] = (uint8_t)((i >> 1) & 1);
    }

    /* modbus_tcp_listen binds the port given to modbus_new_tcp; port 0 is allowed. */
    int listener = modbus_tcp_listen(ctx, 64);
    if (listener < 0) {
        fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    getsockname(listener, (struct sockaddr *)&bound, &bound_len);
    printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
    fflush(stdout);

    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    int header = modbus_get_header_length(ctx);
    fd_set all;
    FD_ZERO(&all);
    FD_SET(listener, &all);
    int max_fd = listener;
    unsigned long long reads = 0, changes = 0;
    double next_stats = stats_ms > 0 ? monotonic_seconds() : 0;
    double last_request = 0;

    for (;;) {
        fd_set ready = all;
        struct timeval wait, *timeout = NULL;
        if (stats_ms > 0) {
            double now = monotonic_seconds();
            if (now >= next_stats) {
                printf("stats %.6f %llu %llu\n", now, reads, changes);
                fflush(stdout);
                while (next_stats <= now) next_stats += stats_ms / 1000.0;
            }
            double left = next_stats - now;
            wait.tv_sec = (long)left;
            wait.tv_usec = (long)((left - wait.tv_sec) * 1e6);
            timeout = &wait;
        }
        struct timeval no_wait = {0, 0};
        if (busy_poll_us > 0 && monotonic_seconds() - last_request < busy_poll_us / 1e6) timeout = &no_wait;
        int ready_count = select(max_fd + 1, &ready, NULL, NULL, timeout);
        if (ready_count < 0) {
            if (errno == EINTR) continue;
            perror("select");
            return 1;
        }
        if (ready_count > 0 && busy_poll_us > 0) last_request = monotonic_seconds();
        for (int fd = 0; fd <= max_fd; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            if (fd == listener) {
                struct sockaddr_in peer;
                socklen_t len = sizeof peer;
                int client = accept(listener, (struct sockaddr *)&peer, &len);
                if (client < 0) continue;
                FD_SET(client, &all);
                if (client > max_fd) max_fd = client;
                continue;
            }
            modbus_set_socket(ctx, fd);
            int rc = modbus_receive(ctx, query);
            if (rc > 0) {
                modbus_reply(ctx, query, rc, map);
                int function = query[header];
                if (function == 3 || function == 4) reads++;
                if (stride > 0 && (function == 3 || function == 4)) {
                    int start = (query[header + 1] << 8) | query[header + 2];
                    int count = (query[header + 3] << 8) | query[header + 4];
                    uint16_t *table = function == 3 ? map->tab_registers : map->tab_input_registers;
                    for (int i = start; i < start + count && i < TABLE_SIZE; i += stride) {
                        table[i]++;
                        changes++;
                    }
                }
            } else if (rc == -1) {
                /* the client closed the connection, or sent something unreadable */
                close(fd);
                FD_CLR(fd, &all);
            }
        }
    }
}
