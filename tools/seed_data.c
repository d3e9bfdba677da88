/* seed_data.c — the embedded Brazilian reference data the seed generators draw from: common
 * first names and surnames, ~45 real cities with their UF, DDD area code and a CEP range
 * inside the city, street types and names. Lists written for pgsov; order matters (a value
 * is picked by index, so reordering changes generated data — append instead). */
#include "seed_internal.h"

const char *const seed_first_names[] = {
    "Ana", "Maria", "Francisca", "Antônia", "Adriana", "Juliana", "Márcia", "Fernanda",
    "Patrícia", "Aline", "Sandra", "Camila", "Amanda", "Bruna", "Jéssica", "Letícia",
    "Júlia", "Luciana", "Vanessa", "Mariana", "Gabriela", "Larissa", "Beatriz", "Rafaela",
    "Cláudia", "Simone", "Daniela", "Carla", "Helena", "Alice", "Laura", "Valentina",
    "Sophia", "Isabela", "Manuela", "Lívia", "Cecília", "Lorena", "Yasmin", "Heloísa",
    "Raimunda", "Tereza", "Conceição", "Rosângela", "Natália", "Priscila", "Tatiane",
    "Débora", "Renata", "Elaine",
    "José", "João", "Antônio", "Francisco", "Carlos", "Paulo", "Pedro", "Lucas", "Luiz",
    "Marcos", "Luís", "Gabriel", "Rafael", "Daniel", "Marcelo", "Bruno", "Eduardo",
    "Felipe", "Raimundo", "Rodrigo", "Manoel", "Mateus", "André", "Fernando", "Fábio",
    "Leonardo", "Gustavo", "Guilherme", "Leandro", "Tiago", "Anderson", "Ricardo",
    "Márcio", "Jorge", "Sebastião", "Alexandre", "Roberto", "Edson", "Diego", "Vitor",
    "Sérgio", "Cláudio", "Matheus", "Thiago", "Geraldo", "Adriano", "Luciano", "Júlio",
    "Renato", "Arthur", "Heitor", "Davi", "Bernardo", "Samuel", "Enzo", "Otávio",
};
const size_t seed_n_first_names = sizeof seed_first_names / sizeof seed_first_names[0];

const char *const seed_surnames[] = {
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira",
    "Lima", "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes",
    "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade",
    "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas", "Cardoso", "Ramos",
    "Gonçalves", "Santana", "Teixeira", "Araújo", "Pinto", "Correia", "Cavalcanti",
    "Moura", "Cunha", "Batista", "Campos", "Monteiro", "Farias", "Rezende", "Medeiros",
    "Castro", "Borges", "Miranda", "Azevedo", "Brito", "Reis", "Pires", "Sampaio",
    "Bezerra", "Melo", "Xavier", "Cruz", "Fonseca", "Prado", "Queiroz", "Matos", "Assis",
    "Pacheco", "Coelho", "Tavares", "Siqueira", "Leite", "Peixoto", "Barros", "Macedo",
    "Aguiar", "Duarte", "Amaral", "Guimarães", "Magalhães", "Falcão", "Brandão", "Sales",
    "Vasconcelos", "Bastos", "Toledo", "Cordeiro", "Conceição", "Damasceno", "Figueiredo",
    "Lacerda", "Nogueira", "Paiva", "Pimentel", "Quintana", "Rangel", "Sousa", "Torres",
    "Valente", "Xavante", "Zanetti", "Esteves", "Honorato", "Jardim",
};
const size_t seed_n_surnames = sizeof seed_surnames / sizeof seed_surnames[0];

/* name, UF, DDD, CEP range (first five digits). Ranges lie inside each city's real band. */
const struct seed_city seed_cities[] = {
    { "São Paulo", "SP", 11, 1000, 5999 },
    { "Guarulhos", "SP", 11, 7000, 7399 },
    { "Osasco", "SP", 11, 6000, 6299 },
    { "Santos", "SP", 13, 11000, 11099 },
    { "São José dos Campos", "SP", 12, 12200, 12248 },
    { "Sorocaba", "SP", 15, 18000, 18109 },
    { "Ribeirão Preto", "SP", 16, 14000, 14114 },
    { "Campinas", "SP", 19, 13000, 13139 },
    { "Rio de Janeiro", "RJ", 21, 20000, 23799 },
    { "Niterói", "RJ", 21, 24000, 24390 },
    { "Petrópolis", "RJ", 24, 25600, 25779 },
    { "Vitória", "ES", 27, 29000, 29099 },
    { "Belo Horizonte", "MG", 31, 30000, 31999 },
    { "Juiz de Fora", "MG", 32, 36000, 36099 },
    { "Uberlândia", "MG", 34, 38400, 38415 },
    { "Salvador", "BA", 71, 40000, 42599 },
    { "Feira de Santana", "BA", 75, 44000, 44149 },
    { "Aracaju", "SE", 79, 49000, 49098 },
    { "Recife", "PE", 81, 50000, 52999 },
    { "Maceió", "AL", 82, 57000, 57099 },
    { "João Pessoa", "PB", 83, 58000, 58099 },
    { "Campina Grande", "PB", 83, 58400, 58439 },
    { "Natal", "RN", 84, 59000, 59139 },
    { "Fortaleza", "CE", 85, 60000, 61599 },
    { "Teresina", "PI", 86, 64000, 64099 },
    { "São Luís", "MA", 98, 65000, 65109 },
    { "Belém", "PA", 91, 66000, 66999 },
    { "Macapá", "AP", 96, 68900, 68914 },
    { "Manaus", "AM", 92, 69000, 69099 },
    { "Boa Vista", "RR", 95, 69300, 69339 },
    { "Rio Branco", "AC", 68, 69900, 69923 },
    { "Brasília", "DF", 61, 70000, 72799 },
    { "Goiânia", "GO", 62, 74000, 74899 },
    { "Anápolis", "GO", 62, 75000, 75159 },
    { "Palmas", "TO", 63, 77000, 77270 },
    { "Cuiabá", "MT", 65, 78000, 78109 },
    { "Porto Velho", "RO", 69, 76800, 76834 },
    { "Campo Grande", "MS", 67, 79000, 79124 },
    { "Curitiba", "PR", 41, 80000, 82999 },
    { "Londrina", "PR", 43, 86000, 86099 },
    { "Maringá", "PR", 44, 87000, 87099 },
    { "Florianópolis", "SC", 48, 88000, 88099 },
    { "Joinville", "SC", 47, 89200, 89239 },
    { "Porto Alegre", "RS", 51, 90000, 91999 },
    { "Caxias do Sul", "RS", 54, 95000, 95124 },
    { "Pelotas", "RS", 53, 96000, 96099 },
};
const size_t seed_n_cities = sizeof seed_cities / sizeof seed_cities[0];

const char *const seed_street_kinds[] = { "Rua", "Rua", "Rua", "Avenida", "Travessa", "Alameda" };
const size_t seed_n_street_kinds = sizeof seed_street_kinds / sizeof seed_street_kinds[0];

const char *const seed_street_names[] = {
    "das Flores", "Sete de Setembro", "XV de Novembro", "Tiradentes", "Dom Pedro II",
    "Marechal Deodoro", "Barão do Rio Branco", "Santos Dumont", "São João", "da Liberdade",
    "Getúlio Vargas", "Rui Barbosa", "José Bonifácio", "das Palmeiras", "dos Andradas",
    "Paraná", "Bahia", "Amazonas", "Rio Grande do Sul", "Minas Gerais", "Goiás",
    "Castro Alves", "Machado de Assis", "Monteiro Lobato", "Princesa Isabel", "da Paz",
    "Independência", "Brasil", "Atlântica", "Presidente Vargas", "Duque de Caxias",
    "Floriano Peixoto", "Anita Garibaldi", "Padre Anchieta", "do Comércio", "das Acácias",
    "dos Ipês", "Quintino Bocaiúva", "Voluntários da Pátria", "Cândido Portinari",
};
const size_t seed_n_street_names = sizeof seed_street_names / sizeof seed_street_names[0];

const char *const seed_company_words[] = {
    "Comércio", "Transportes", "Alimentos", "Construções", "Tecnologia", "Serviços",
    "Distribuidora", "Indústria", "Logística", "Agropecuária", "Engenharia", "Confecções",
    "Materiais", "Informática", "Consultoria", "Farmácia",
};
const size_t seed_n_company_words = sizeof seed_company_words / sizeof seed_company_words[0];
