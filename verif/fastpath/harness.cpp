// The fast path's test bench: drives a Verilator model of one generated unit with the golden
// stimulus of `verif.vectors` (binary files written by `python -m verif.fastpath`) at full
// speed, with seeded random stalls on both stream sides, and compares every output beat.
//
// Built by verif/fastpath/__init__.py with the unit's Verilog; `fp_ports.h` (generated from the
// port map) names the model class and the ports beside the stream. Usage:
//
//   fastsim DIR [--seed S] [--gap P] [--hold P] [--burst P] [--fill N] [--window N] [--no-wave]
//
// DIR holds fast.txt (counts, timeout, expected status) and the .bin files: little-endian 32-bit
// words, `words` per beat (in.bin, out.bin, one per register and pulse port, wr_addr.bin,
// wr_data.bin) and fields.txt (the output fields, for the mismatch report). P are per-mille
// probabilities per clock: gap = the input offers nothing, hold = o__ready low, burst = o__ready
// low for 8 clocks. Exit status 0 and a last line `PASS ...`, or 1 and `FAIL ...`: the first
// output beat that differs with its number, clock, expected and received payload in hex, and
// every field (lane) that differs. On a failure a build with --trace-fst repeats the run with an
// FST trace of the clocks around it (WINDOW before, 16 after) into DIR/fail.fst (unless
// --no-wave); the driver builds that variant only when a run has failed.

#include <chrono>
#include <ctime>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "verilated.h"
#if VM_TRACE
#include "verilated_fst_c.h"
#endif
#include "fp_ports.h"   // typedef Top; FP_* port lists and word counts

namespace {

// -- port access, any width ------------------------------------------------------------------

template <class T> void put(T& port, const uint32_t* w) {
    if constexpr (sizeof(T) <= 4) port = static_cast<T>(w[0]);
    else port = static_cast<T>(w[0]) | (static_cast<T>(w[1]) << 32);
}
template <std::size_t N> void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
template <class T> void get(const T& port, uint32_t* w) {
    uint64_t v = port;
    w[0] = static_cast<uint32_t>(v);
    if constexpr (sizeof(T) > 4) w[1] = static_cast<uint32_t>(v >> 32);
}
template <std::size_t N> void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

// -- files -----------------------------------------------------------------------------------

std::vector<uint32_t> load(const std::string& path, std::size_t words) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) { std::printf("FAIL cannot read %s\n", path.c_str()); std::exit(2); }
    std::size_t bytes = f.tellg();
    if (bytes != words * 4) {
        std::printf("FAIL %s: %zu bytes, expected %zu\n", path.c_str(), bytes, words * 4);
        std::exit(2);
    }
    std::vector<uint32_t> v(words);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), bytes);
    return v;
}

struct Field { std::string name; int offset, width; };

struct Spec {
    uint64_t n_in = 0, n_out = 0, n_wr = 0, timeout = 0, tail = 0;
    std::vector<uint64_t> status;      // expected, in FP_STATUS order
    std::vector<Field> fields;
};

Spec read_spec(const std::string& dir) {
    Spec s;
    std::ifstream f(dir + "/fast.txt");
    if (!f) { std::printf("FAIL cannot read %s/fast.txt\n", dir.c_str()); std::exit(2); }
    std::string key;
    while (f >> key) {
        if (key == "n_in") f >> s.n_in;
        else if (key == "n_out") f >> s.n_out;
        else if (key == "n_wr") f >> s.n_wr;
        else if (key == "timeout") f >> s.timeout;
        else if (key == "tail") f >> s.tail;
        else if (key == "status") { std::string name; uint64_t v; f >> name >> std::hex >> v >> std::dec; s.status.push_back(v); }
        else { std::printf("FAIL fast.txt: unknown key %s\n", key.c_str()); std::exit(2); }
    }
    std::ifstream ff(dir + "/fields.txt");
    Field fl;
    while (ff >> fl.name >> fl.offset >> fl.width) s.fields.push_back(fl);
    return s;
}

uint64_t bits(const uint32_t* w, int lo, int width) {
    uint64_t v = 0;
    for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>((w[(lo + i) / 32] >> ((lo + i) % 32)) & 1u) << i;
    return v;
}

std::string hex(const uint32_t* w, int width) {
    std::string s;
    char buf[16];
    int words = (width + 31) / 32;
    for (int i = words - 1; i >= 0; --i) {
        int digits = i == words - 1 ? ((width - 32 * i) + 3) / 4 : 8;
        std::snprintf(buf, sizeof buf, "%0*x", digits, w[i]);
        s += buf;
    }
    return s;
}

// splitmix64: the stall pattern of one seed
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    bool chance(unsigned per_mille) { return per_mille && next() % 1000 < per_mille; }
};

struct Options {
    std::string dir;
    uint64_t seed = 1;
    unsigned gap = 250, hold = 250, burst = 30, fill = 0, window = 200;
    bool wave = true;
};

struct Result {
    bool ok = false;
    uint64_t cycles = 0, errors = 0, first_bad = UINT64_MAX, first_cycle = 0;
    uint64_t in_gaps = 0, in_held = 0, out_held = 0;
    std::string report;
};

struct Data {
    Spec spec;
    std::vector<uint32_t> in, out, wr_addr, wr_data;
#define FP_DECL(name, file, words) std::vector<uint32_t> name;
    FP_REGS(FP_DECL)
    FP_PULSES(FP_DECL)
#undef FP_DECL
};

// One run; with `trace_from` < UINT64_MAX the clocks from there to `trace_to` go to `fst`.
Result run(const Options& o, const Data& d, uint64_t trace_from, uint64_t trace_to, const std::string& fst) {
    const Spec& s = d.spec;
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->traceEverOn(trace_from != UINT64_MAX);
    auto top = std::make_unique<Top>(ctx.get());
#if VM_TRACE
    std::unique_ptr<VerilatedFstC> tfp;
#else
    struct NoTrace { void dump(uint64_t) {} void close() {} };
    std::unique_ptr<NoTrace> tfp;
#endif
    Rng rng{o.seed};
    Result r;
    std::ostringstream rep;
    uint32_t got[FP_W_OUT + 2] = {0};

    // everything idle, reset for 3 clocks
    top->FP_I_VALID = 0;
    top->FP_O_READY = 0;
#define FP_IDLE_LOW(name, file) top->name = 0;
    FP_IDLE(FP_IDLE_LOW)
#undef FP_IDLE_LOW
    top->rst = 1;
    uint64_t in_next = 0, out_n = 0, wr_next = 0, settle = 0, fill = 0, tail = 0, burst = 0;
    bool streaming = !FP_HAS_WRITES;
    bool offered = false;         // a beat is on offer (i__valid) and waits for i__ready
    auto dump = [&](uint64_t t) {
        if (tfp) tfp->dump(static_cast<uint64_t>(t));
    };
    for (uint64_t cycle = 0;; ++cycle) {
#if VM_TRACE
        if (trace_from != UINT64_MAX && cycle == trace_from) {
            tfp = std::make_unique<VerilatedFstC>();
            top->trace(tfp.get(), 99);
            tfp->open(fst.c_str());
        }
#else
        (void)fst;
#endif
        if (tfp && cycle > trace_to) { tfp->close(); tfp.reset(); }
        if (cycle == 3) top->rst = 0;
        bool gap = rng.chance(o.gap);
        if (burst) --burst; else if (rng.chance(o.burst)) burst = 8;
        bool hold = burst || rng.chance(o.hold);
        if (cycle >= 3) {
            // 1. parameter writes, one per clock, then 4 idle clocks
#if FP_HAS_WRITES
            top->FP_WR_EN = 0;
            if (wr_next < s.n_wr) {
                if (!gap) {
                    top->FP_WR_EN = 1;
                    put(top->FP_WR_ADDR, &d.wr_addr[wr_next * FP_W_WR_ADDR]);
                    put(top->FP_WR_DATA, &d.wr_data[wr_next * FP_W_WR_DATA]);
                    ++wr_next;
                }
            } else if (!streaming && ++settle == 4) {
                streaming = true;
            }
#endif
            // 2. the input stream, each beat's registers beside it; pulses on its first clock
#define FP_LOW(name, file, words) top->name = 0;
            FP_PULSES(FP_LOW)
#undef FP_LOW
            if (streaming) {
                if (fill < o.fill) ++fill;
                top->FP_O_READY = !hold && fill >= o.fill;
                if (offered) {
                    ++r.in_held;
                } else if (in_next < s.n_in && gap) {
                    top->FP_I_VALID = 0;
                    ++r.in_gaps;
                } else if (in_next < s.n_in) {
                    top->FP_I_VALID = 1;
                    put(top->FP_I_PAYLOAD, &d.in[in_next * FP_W_IN]);
#define FP_SET(name, file, words) put(top->name, &d.name[in_next * (words)]);
                    FP_REGS(FP_SET)
                    FP_PULSES(FP_SET)
#undef FP_SET
                    ++in_next;
                    offered = true;
                } else {
                    top->FP_I_VALID = 0;
                }
            }
        }
        top->clk = 0;
        top->eval();
        dump(10 * cycle);
        // handshakes of this clock edge, from the values just before it
        if (top->FP_I_VALID && top->FP_I_READY) offered = false;
        if (top->FP_O_VALID && top->FP_O_READY) {
            get(top->FP_O_PAYLOAD, got);
            if (out_n >= s.n_out) {
                if (!r.errors) {
                    rep << "FAIL beat " << out_n << " (clock " << cycle << "): not expected (only "
                        << s.n_out << "), got " << hex(got, FP_BITS_OUT) << "\n";
                    r.first_bad = out_n;
                    r.first_cycle = cycle;
                }
                ++r.errors;
            } else {
                const uint32_t* want = &d.out[out_n * FP_W_OUT];
                if (std::memcmp(want, got, FP_W_OUT * 4) != 0) {
                    if (!r.errors) {
                        rep << "FAIL beat " << out_n << " (clock " << cycle << "): expected "
                            << hex(want, FP_BITS_OUT) << ", got " << hex(got, FP_BITS_OUT) << "\n";
                        char buf[160];
                        for (const Field& f : s.fields) {
                            uint64_t a = bits(want, f.offset, f.width), b = bits(got, f.offset, f.width);
                            if (a != b) {
                                std::snprintf(buf, sizeof buf, "  %s: expected %" PRIx64 ", got %" PRIx64 "\n",
                                              f.name.c_str(), a, b);
                                rep << buf;
                            }
                        }
                        r.first_bad = out_n;
                        r.first_cycle = cycle;
                    }
                    ++r.errors;
                }
            }
            ++out_n;
        } else if (top->FP_O_VALID) {
            ++r.out_held;
        }
        top->clk = 1;
        top->eval();
        dump(10 * cycle + 5);
        r.cycles = cycle + 1;
        if (out_n >= s.n_out && ++tail >= s.tail) break;
        if (cycle + 1 >= s.timeout) {
            rep << "FAIL timeout after " << cycle + 1 << " clocks: " << in_next << " of " << s.n_in
                << " input beats offered, " << out_n << " of " << s.n_out << " output beats received\n";
            if (r.first_bad == UINT64_MAX) { r.first_bad = out_n; r.first_cycle = cycle; }
            r.ok = false;
            r.report = rep.str();
            if (tfp) tfp->close();
            top->final();
            return r;
        }
    }
    // the status outputs once the stream drained
    uint64_t status_bad = 0;
    if (in_next != s.n_in || offered) {
        rep << "FAIL inputs: " << in_next << " of " << s.n_in << " beats offered\n";
        ++status_bad;
    }
    {
        std::size_t k = 0;
#define FP_CHECK(name, file) \
        { \
            uint64_t v = top->name; \
            if (k < s.status.size() && v != s.status[k]) { \
                rep << "FAIL status " file ": expected " << std::hex << s.status[k] << ", got " \
                    << v << std::dec << "\n"; \
                ++status_bad; \
            } \
            ++k; \
        }
        FP_STATUS(FP_CHECK)
#undef FP_CHECK
        if (k != s.status.size()) {
            rep << "FAIL fast.txt: " << s.status.size() << " status values, the unit has " << k << "\n";
            ++status_bad;
        }
    }
    if (tfp) tfp->close();
    top->final();
    if (r.errors) {
        rep << "FAIL " << r.errors << " of " << s.n_out << " beats differ, the first is beat "
            << r.first_bad << "\n";
    } else if (status_bad) {
        rep << "FAIL status (all " << s.n_out << " beats match)\n";
        r.first_cycle = r.cycles - 1;
    }
    r.ok = !r.errors && !status_bad;
    r.report = rep.str();
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto num = [&](const char* what) -> uint64_t {
            if (i + 1 >= argc) { std::printf("FAIL %s needs a value\n", what); std::exit(2); }
            return std::strtoull(argv[++i], nullptr, 0);
        };
        if (a == "--seed") o.seed = num("--seed");
        else if (a == "--gap") o.gap = num("--gap");
        else if (a == "--hold") o.hold = num("--hold");
        else if (a == "--burst") o.burst = num("--burst");
        else if (a == "--fill") o.fill = num("--fill");
        else if (a == "--window") o.window = num("--window");
        else if (a == "--no-wave") o.wave = false;
        else if (a[0] == '+') continue;   // Verilator's own plusargs
        else if (o.dir.empty()) o.dir = a;
        else { std::printf("FAIL unknown argument %s\n", a.c_str()); return 2; }
    }
    if (o.dir.empty()) { std::printf("usage: fastsim DIR [--seed S] [--gap P] [--hold P] [--burst P] [--fill N]\n"); return 2; }
    Verilated::commandArgs(argc, argv);
    auto t0 = std::chrono::steady_clock::now();
    Data d;
    d.spec = read_spec(o.dir);
    const Spec& s = d.spec;
    d.in = load(o.dir + "/in.bin", s.n_in * FP_W_IN);
    d.out = load(o.dir + "/out.bin", s.n_out * FP_W_OUT);
#define FP_LOAD(name, file, words) d.name = load(o.dir + "/" file ".bin", s.n_in * (words));
    FP_REGS(FP_LOAD)
    FP_PULSES(FP_LOAD)
#undef FP_LOAD
#if FP_HAS_WRITES
    d.wr_addr = load(o.dir + "/wr_addr.bin", s.n_wr * FP_W_WR_ADDR);
    d.wr_data = load(o.dir + "/wr_data.bin", s.n_wr * FP_W_WR_DATA);
#endif
    auto t1 = std::chrono::steady_clock::now();
    std::clock_t c1 = std::clock();
    Result r = run(o, d, UINT64_MAX, 0, "");
    std::clock_t c2 = std::clock();
    auto t2 = std::chrono::steady_clock::now();
    double load_s = std::chrono::duration<double>(t1 - t0).count();
    double sim_s = std::chrono::duration<double>(t2 - t1).count();
    double cpu_s = static_cast<double>(c2 - c1) / CLOCKS_PER_SEC;   // the same on a busy machine
    std::printf("stalls: %" PRIu64 " input gaps, %" PRIu64 " clocks input held by i__ready, %" PRIu64
                " clocks output held by o__ready, %" PRIu64 " clocks\n",
                r.in_gaps, r.in_held, r.out_held, r.cycles);
    std::printf("time: load %.3f s, simulation %.3f s, cpu %.3f s, %.0f clocks/s of cpu\n", load_s,
                sim_s, cpu_s, cpu_s > 0 ? r.cycles / cpu_s : 0.0);
    if (r.ok) {
        std::printf("PASS %" PRIu64 " beats\n", s.n_out);
        return 0;
    }
    std::fputs(r.report.c_str(), stdout);
    if (o.wave && !VM_TRACE) {
        std::printf("waveform: none from this build (no --trace-fst); the driver rebuilds with it\n");
    } else if (o.wave) {
        uint64_t from = r.first_cycle > o.window ? r.first_cycle - o.window : 0;
        std::string fst = o.dir + "/fail.fst";
        run(o, d, from, r.first_cycle + 16, fst);
        std::printf("waveform: %s (clocks %" PRIu64 "..%" PRIu64 ", 10 time units per clock)\n",
                    fst.c_str(), from, r.first_cycle + 16);
    }
    // the summary line last, as the Verilog bench
    std::string last = r.report.substr(0, r.report.size() - 1);
    last = last.substr(last.rfind('\n') == std::string::npos ? 0 : last.rfind('\n') + 1);
    std::printf("%s\n", last.c_str());
    return 1;
}
