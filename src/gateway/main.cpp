#include <cstdio>
int main() { std::puts("imgate gateway: not built yet"); return 0; }
